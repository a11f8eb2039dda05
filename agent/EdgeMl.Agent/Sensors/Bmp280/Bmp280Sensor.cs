using System.Device.I2c;
using Iot.Device.Bmxx80;
using Iot.Device.Bmxx80.PowerMode;

namespace EdgeMl.Agent.Sensors.Bmp280;

/// <summary>
/// A BMP280 on I2C through Iot.Device.Bindings: channels temperature (°C) and pressure (hPa) — the BME280's sibling
/// without humidity, often sold in its place. Normal mode; after an I/O error the driver is built again on the next
/// read (id check, calibration). Another chip id is <see cref="SensorMisconfiguredException"/>.
/// </summary>
public sealed class Bmp280Sensor(Func<I2cDevice> openDevice, string name, double sampleRateHz) : ISensorSource
{
    private static readonly string[] ChannelNames = ["temperature", "pressure"];

    private static readonly Dictionary<byte, string> Lookalikes = new()
    {
        [0x60] = "a BME280: use sensor bme280 (it has humidity too)",
        [0x55] = "a BMP180",
        [0x61] = "a BME680",
    };

    private Iot.Device.Bmxx80.Bmp280? _chip;

    public string Name => name;
    public IReadOnlyList<string> Channels => ChannelNames;
    public double SampleRateHz => sampleRateHz;
    public bool IsVirtual => false;

    public bool Read(Span<float> values)
    {
        try
        {
            var chip = _chip ??= Open();
            if (!chip.TryReadTemperature(out var t) | !chip.TryReadPressure(out var p))
            {
                throw new IOException($"{name}: a measurement was skipped");
            }

            // As for the BME280: the driver's own units, checked, keep UnitsNet's conversion tables out of the binary.
            values[0] = t.Unit == UnitsNet.Units.TemperatureUnit.DegreeCelsius
                ? (float)t.Value
                : throw new IOException($"the BMP280 driver reported temperature in {t.Unit}, not the unit the agent reads");
            values[1] = p.Unit switch
            {
                UnitsNet.Units.PressureUnit.Pascal => (float)(p.Value / 100),
                UnitsNet.Units.PressureUnit.Hectopascal => (float)p.Value,
                _ => throw new IOException($"the BMP280 driver reported pressure in {p.Unit}, not the unit the agent reads"),
            };
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or TimeoutException)
        {
            Reset();
            throw new IOException($"{name}: {e.Message}", e);
        }
    }

    private Iot.Device.Bmxx80.Bmp280 Open()
    {
        var device = openDevice();
        try
        {
            SensorMisconfiguredException.CheckChipId(device, name, "BMP280", 0xD0, 0x58, Lookalikes);
        }
        catch
        {
            device.Dispose();
            throw;
        }

        var chip = new Iot.Device.Bmxx80.Bmp280(device) { TemperatureSampling = Sampling.Standard, PressureSampling = Sampling.Standard };
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
