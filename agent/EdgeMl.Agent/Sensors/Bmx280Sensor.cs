using System.Device.I2c;
using Iot.Device.Bmxx80;
using Iot.Device.Bmxx80.PowerMode;

namespace EdgeMl.Agent.Sensors;

/// <summary>
/// What the Bosch BME280 and BMP280 sensors share (Iot.Device.Bindings' <see cref="Bmx280Base"/>): the chip id is
/// checked when the driver is built (another id is <see cref="SensorMisconfiguredException"/>, not retried), the chip
/// runs in normal mode, and after an I/O error the driver is built again on the next read (id check, calibration: a
/// chip that was power-cycled needs that). Channel 0 is temperature (°C), the last one pressure (hPa); a subclass
/// reads what lies between.
/// </summary>
public abstract class Bmx280Sensor<TChip>(
    Func<I2cDevice> openDevice, string name, double sampleRateHz, string chipName, byte chipId, IReadOnlyDictionary<byte, string> lookalikes, string[] channels)
    : ISensorSource where TChip : Bmx280Base
{
    private TChip? _chip;

    public string Name => name;
    public IReadOnlyList<string> Channels => channels;
    public double SampleRateHz => sampleRateHz;
    public bool IsVirtual => false;

    /// <summary>The driver on an opened device whose chip id was checked.</summary>
    protected abstract TChip Create(I2cDevice device);

    /// <summary>Channels between temperature and pressure; false when the chip skipped the measurement.</summary>
    protected virtual bool ReadMore(TChip chip, Span<float> values) => true;

    public bool Read(Span<float> values)
    {
        try
        {
            var chip = _chip ??= Open();
            if (!chip.TryReadTemperature(out var t) | !chip.TryReadPressure(out var p) | !ReadMore(chip, values))
            {
                throw new IOException($"{name}: a measurement was skipped");
            }

            // The driver builds these as °C and Pa/hPa; reading Value in that unit (checked) keeps UnitsNet's
            // unit-conversion tables — megabytes of native code — out of the binary.
            values[0] = t.Unit == UnitsNet.Units.TemperatureUnit.DegreeCelsius ? (float)t.Value : throw WrongUnit("temperature", t.Unit);
            values[channels.Length - 1] = p.Unit switch
            {
                UnitsNet.Units.PressureUnit.Pascal => (float)(p.Value / 100),
                UnitsNet.Units.PressureUnit.Hectopascal => (float)p.Value,
                _ => throw WrongUnit("pressure", p.Unit),
            };
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or TimeoutException)
        {
            Reset();
            throw new IOException($"{name}: {e.Message}", e);
        }
    }

    /// <summary>A reading in a unit the agent does not convert from.</summary>
    protected IOException WrongUnit(string what, Enum unit) => new($"the {chipName} driver reported {what} in {unit}, not the unit the agent reads");

    private TChip Open()
    {
        var device = openDevice();
        try
        {
            SensorMisconfiguredException.CheckChipId(device, name, chipName, 0xD0, chipId, lookalikes);
        }
        catch
        {
            device.Dispose();
            throw;
        }

        var chip = Create(device);
        chip.TemperatureSampling = Sampling.Standard;
        chip.PressureSampling = Sampling.Standard;
        chip.SetPowerMode(Bmx280PowerMode.Normal);
        return chip;
    }

    private void Reset()
    {
        try { _chip?.Dispose(); } catch (IOException) { }
        _chip = null;
    }

    public void Dispose()
    {
        Reset();
        GC.SuppressFinalize(this);
    }
}
