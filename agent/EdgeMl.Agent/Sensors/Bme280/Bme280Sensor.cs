using System.Device.I2c;
using Iot.Device.Bmxx80;
using Iot.Device.Bmxx80.PowerMode;

namespace EdgeMl.Agent.Sensors.Bme280;

/// <summary>
/// A BME280 on I2C through Iot.Device.Bindings: channels temperature (°C), humidity (%RH), pressure (hPa).
/// The chip runs in normal mode. After an I/O error the driver is built again on the next read, which
/// re-checks the chip id and re-reads the calibration (a chip that was power-cycled needs that). A chip with
/// another id (a BMP280 is sold as a BME280 often) is <see cref="SensorMisconfiguredException"/>, not retried.
/// </summary>
public sealed class Bme280Sensor(Func<I2cDevice> openDevice, string name, double sampleRateHz) : ISensorSource
{
    private static readonly string[] ChannelNames = ["temperature", "humidity", "pressure"];
    private Iot.Device.Bmxx80.Bme280? _chip;

    public string Name => name;
    public IReadOnlyList<string> Channels => ChannelNames;
    public double SampleRateHz => sampleRateHz;
    public bool IsVirtual => false;

    public bool Read(Span<float> values)
    {
        try
        {
            var chip = _chip ??= Open();
            if (!chip.TryReadTemperature(out var t) | !chip.TryReadHumidity(out var h) | !chip.TryReadPressure(out var p))
            {
                throw new IOException($"{name}: a measurement was skipped");
            }

            // The driver builds these as °C, % and hPa; reading Value in that unit (checked) keeps UnitsNet's
            // unit-conversion tables — megabytes of native code — out of the binary.
            values[0] = (float)In(t.Value, t.Unit == UnitsNet.Units.TemperatureUnit.DegreeCelsius, "temperature", t.Unit);
            values[1] = (float)In(h.Value, h.Unit == UnitsNet.Units.RelativeHumidityUnit.Percent, "humidity", h.Unit);
            values[2] = p.Unit switch
            {
                UnitsNet.Units.PressureUnit.Pascal => (float)(p.Value / 100),
                UnitsNet.Units.PressureUnit.Hectopascal => (float)p.Value,
                _ => (float)In(p.Value, false, "pressure", p.Unit),
            };
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or TimeoutException)
        {
            Reset();
            throw new IOException($"{name}: {e.Message}", e);
        }
    }

    private static double In(double value, bool expectedUnit, string what, Enum unit) =>
        expectedUnit ? value : throw new IOException($"the BME280 driver reported {what} in {unit}, not the unit the agent reads");

    /// <summary>Chips that answer where a BME280 was configured (Bosch chip ids).</summary>
    private static readonly Dictionary<byte, string> Lookalikes = new()
    {
        [0x56] = "a BMP280 sample: temperature and pressure, no humidity; use sensor bmp280",
        [0x57] = "a BMP280 sample: temperature and pressure, no humidity; use sensor bmp280",
        [0x58] = "a BMP280: temperature and pressure, no humidity; use sensor bmp280",
        [0x55] = "a BMP180",
        [0x61] = "a BME680",
    };

    private Iot.Device.Bmxx80.Bme280 Open()
    {
        var device = openDevice();
        try
        {
            SensorMisconfiguredException.CheckChipId(device, name, "BME280", 0xD0, 0x60, Lookalikes);
        }
        catch
        {
            device.Dispose();
            throw;
        }

        var chip = new Iot.Device.Bmxx80.Bme280(device)
        {
            TemperatureSampling = Sampling.Standard,
            PressureSampling = Sampling.Standard,
            HumiditySampling = Sampling.Standard,
        };
        chip.SetPowerMode(Bmx280PowerMode.Normal);
        return chip;
    }

    private void Reset()
    {
        try { _chip?.Dispose(); } catch (IOException) { }
        _chip = null;
    }

    public void Dispose() => Reset();
}
