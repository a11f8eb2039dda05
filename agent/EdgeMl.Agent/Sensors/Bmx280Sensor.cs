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
/// <para>
/// A chip that browns out resets into sleep mode without an I/O error: it keeps answering, with readings frozen at
/// their last (or reset) values. Each read checks the mode bits of ctrl_meas (0xF4) first, and watches the raw
/// pressure and temperature registers (0xF7–0xFC): mode bits that are not normal (0b11), or raw values identical for
/// <see cref="FrozenReads"/> reads in a row (a working chip's least significant bits move with noise), fail the read
/// with an <see cref="IOException"/> saying so (counted in the sensor's health like any read error), and the next read
/// initialises the chip again.
/// </para>
/// </summary>
public abstract class Bmx280Sensor<TChip>(
    Func<I2cDevice> openDevice, string name, double sampleRateHz, string chipName, byte chipId, IReadOnlyDictionary<byte, string> lookalikes, string[] channels)
    : ISensorSource where TChip : Bmx280Base
{
    private TChip? _chip;
    private I2cDevice? _device;
    private readonly byte[] _raw = new byte[6];
    private readonly byte[] _lastRaw = new byte[6];
    private int _sameRaw;

    /// <summary>
    /// Reads in a row with identical raw registers after which the chip counts as frozen: 20, or 5 s worth of reads at
    /// a higher rate (a chip in normal mode measures every ~10 ms; faster reads may see one measurement twice).
    /// </summary>
    public int FrozenReads { get; } = Math.Max(20, (int)Math.Ceiling(5 * sampleRateHz));

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
            CheckAwake();
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
            CheckNotFrozen();
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

    /// <summary>The chip is in normal mode (ctrl_meas mode bits 0b11); a chip reset by a brown-out sleeps (0b00).</summary>
    private void CheckAwake()
    {
        Span<byte> ctrl = stackalloc byte[1];
        _device!.WriteRead([0xF4], ctrl);
        var mode = ctrl[0] & 0b11;
        if (mode != 0b11)
        {
            throw new IOException($"the {chipName} is in {(mode == 0 ? "sleep" : "forced")} mode (ctrl_meas 0xF4 reads 0x{ctrl[0]:x2}), " +
                                  "as after a reset by a brown-out: its readings would stay frozen; initialising it again");
        }
    }

    /// <summary>The raw pressure and temperature registers moved within the last <see cref="FrozenReads"/> reads.</summary>
    private void CheckNotFrozen()
    {
        _device!.WriteRead([0xF7], _raw);
        if (!_raw.AsSpan().SequenceEqual(_lastRaw))
        {
            _raw.CopyTo(_lastRaw, 0);
            _sameRaw = 1;
            return;
        }

        if (++_sameRaw >= FrozenReads)
        {
            throw new IOException($"the {chipName}'s readings are frozen (raw registers 0xF7-0xFC identical {_sameRaw} reads in a row); initialising it again");
        }
    }

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
        _device = device;
        _sameRaw = 0;
        Array.Clear(_lastRaw);
        return chip;
    }

    private void Reset()
    {
        try { _chip?.Dispose(); } catch (IOException) { }
        _chip = null;
        _device = null;
    }

    public void Dispose()
    {
        Reset();
        GC.SuppressFinalize(this);
    }
}
