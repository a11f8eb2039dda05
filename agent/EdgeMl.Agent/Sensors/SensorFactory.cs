using System.Device.Gpio;
using System.Device.I2c;
using System.Globalization;
using EdgeMl.Agent.Sensors.Bme280;
using EdgeMl.Agent.Sensors.Bmp280;
using EdgeMl.Agent.Sensors.Gpio;
using EdgeMl.Agent.Sensors.Mpu6050;
using EdgeMl.Agent.Sensors.Replay;
using EdgeMl.Agent.Sensors.Simulated;

namespace EdgeMl.Agent.Sensors;

/// <summary>
/// Builds a sensor source from its spec:
/// <c>sim:vibration[,fault=…,fault-at=S,…]</c>, <c>sim:environment</c>, <c>replay:FILE.csv[,rate=HZ,loop=true]</c>, <c>replay:FILE.wav[,channels=A+B,loop=true]</c> (16-bit PCM at the file's rate),
/// <c>bme280[,bus=1,address=0x76,rate=HZ]</c>, <c>bmp280[,bus=1,address=0x76,rate=HZ]</c>, <c>mpu6050[,bus=1,address=0x68,rate=HZ]</c>, <c>gpio:17,27[,rate=HZ]</c>.
/// </summary>
public static class SensorFactory
{
    public static ISensorSource Create(
        string text, int seed, string where,
        Func<I2cConnectionSettings, I2cDevice>? openI2c = null,
        Func<GpioController>? gpio = null)
    {
        var spec = SensorSpec.Parse(text, where);
        openI2c ??= I2cDevice.Create;
        switch (spec.Kind, spec.Argument)
        {
            case ("sim", "vibration"):
                return new VibrationSimulator(VibrationSettings.FromSpec(spec, seed, where));
            case ("sim", "environment"):
                return new EnvironmentSimulator((int)spec.GetDouble("seed", seed, where), spec.GetDouble("rate", 1, where), spec.GetDouble("drift", 0, where));
            case ("sim", var other):
                throw new ConfigurationException(where, $"'sim:{other}' is not a simulated sensor (sim:vibration, sim:environment)");
            case ("replay", var file) when !string.IsNullOrEmpty(file) && file.EndsWith(".wav", StringComparison.OrdinalIgnoreCase):
            {
                var wav = new WavReplaySensor(file, WavReplaySensor.ParseChannels(spec.GetString("channels"), $"{where}.channels"), spec.GetString("loop") is "true" or "1", where);
                if (spec.GetString("rate") is not null && Math.Abs(spec.GetDouble("rate", 0, where) - wav.SampleRateHz) > 1e-6)
                {
                    wav.Dispose();
                    throw new ConfigurationException($"{where}.rate", $"'{file}' is recorded at {wav.SampleRateHz} Hz; a WAV file is replayed at its own rate (drop rate=, or resample the file: sox IN.wav -r RATE OUT.wav)");
                }

                return wav;
            }

            case ("replay", var file) when !string.IsNullOrEmpty(file):
                return new CsvReplaySensor(file, spec.GetDouble("rate", 1000, where), spec.GetString("loop") is "true" or "1");
            case ("bme280", _):
            {
                var (bus, address) = I2cAddress(spec, 0x76, where);
                return new Bme280Sensor(() => openI2c(new I2cConnectionSettings(bus, address)), $"bme280@{bus}:0x{address:x2}", spec.GetDouble("rate", 1, where));
            }

            case ("bmp280", _):
            {
                var (bus, address) = I2cAddress(spec, 0x76, where);
                return new Bmp280Sensor(() => openI2c(new I2cConnectionSettings(bus, address)), $"bmp280@{bus}:0x{address:x2}", spec.GetDouble("rate", 1, where));
            }

            case ("mpu6050", _):
            {
                var (bus, address) = I2cAddress(spec, 0x68, where);
                return new Mpu6050Sensor(() => openI2c(new I2cConnectionSettings(bus, address)), $"mpu6050@{bus}:0x{address:x2}", spec.GetDouble("rate", 100, where));
            }

            case ("gpio", var pins) when !string.IsNullOrEmpty(pins):
            {
                var numbers = pins.Split('+', ';').Select(s => int.TryParse(s, out var n) && n >= 0 ? n : throw new ConfigurationException(where, $"'{s}' is not a GPIO pin number")).ToArray();
                return new GpioInputSensor((gpio ?? (() => new GpioController()))(), numbers, spec.GetDouble("rate", 10, where));
            }

            default:
                throw new ConfigurationException(where, $"'{text}' is not a known sensor (sim:vibration, sim:environment, replay:FILE.csv, replay:FILE.wav, bme280, bmp280, mpu6050, gpio:PIN+PIN)");
        }
    }

    private static (int Bus, int Address) I2cAddress(SensorSpec spec, int defaultAddress, string where)
    {
        var bus = (int)spec.GetDouble("bus", 1, where);
        var text = spec.GetString("address");
        var address = defaultAddress;
        if (text is not null)
        {
            var ok = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                ? int.TryParse(text.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out address)
                : int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out address);
            if (!ok || address is < 0x03 or > 0x77)
            {
                throw new ConfigurationException($"{where}.address", $"'{text}' is not a 7-bit I2C address (0x03..0x77)");
            }
        }

        if (bus < 0) throw new ConfigurationException($"{where}.bus", "must be >= 0");
        return (bus, address);
    }
}
