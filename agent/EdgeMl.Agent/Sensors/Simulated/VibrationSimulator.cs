namespace EdgeMl.Agent.Sensors.Simulated;

/// <summary>
/// A vibrating machine seen by a 3-axis accelerometer (m/s², channels ax, ay, az), deterministic for a seed.
/// A shaft turns at <see cref="VibrationSettings.ShaftHz"/>; the healthy machine shows its 1x/2x/3x orders,
/// gravity on z and broadband noise. Faults: <c>imbalance</c> (a strong radial 1x component) and
/// <c>bearing</c> (outer-race impacts at BPFO ≈ 3.585 x shaft speed, each ringing a structural resonance).
/// Slow drift: a gain change (sensor ageing, temperature) and an offset (re-mounting), both per hour of
/// simulated time. The same generator makes the bundled model's training data (see models/vibration).
/// </summary>
public sealed class VibrationSimulator : ISensorSource
{
    private static readonly string[] ChannelNames = ["ax", "ay", "az"];

    private readonly VibrationSettings _s;
    private readonly Random _rng;
    private readonly double _phaseX;
    private readonly double _phaseY;
    private readonly double _bpfo;
    private readonly double _baseAmplitude;
    private long _n;
    private double _shaftPhase;
    private double _nextImpact = double.NaN;
    private double _impactTime = double.NegativeInfinity;
    private double _impactAmp;
    private double _prevImpactTime = double.NegativeInfinity;
    private double _prevImpactAmp;

    public VibrationSimulator(VibrationSettings settings)
    {
        _s = settings;
        _rng = new Random(settings.Seed);
        _phaseX = _rng.NextDouble() * Math.PI * 2;
        _phaseY = _rng.NextDouble() * Math.PI * 2;
        _bpfo = 3.585 * settings.ShaftHz;
        // No two healthy machines vibrate alike: residual unbalance and alignment differ per machine.
        _baseAmplitude = 0.15 + 0.2 * _rng.NextDouble();
    }

    public string Name => "sim:vibration";
    public IReadOnlyList<string> Channels => ChannelNames;
    public double SampleRateHz => _s.SampleRateHz;
    public bool IsVirtual => true;

    /// <summary>Simulated time of the next sample, in seconds.</summary>
    public double Time => _n / _s.SampleRateHz;

    /// <summary>The fault active at the current simulated time.</summary>
    public MachineFault ActiveFault => _s.Fault != MachineFault.None && Time >= _s.FaultAtSeconds ? _s.Fault : MachineFault.None;

    public bool Read(Span<float> values)
    {
        var dt = 1.0 / _s.SampleRateHz;
        var t = _n * dt;
        _n++;

        // Slow speed wander (±1.5 %) as a real motor under varying load.
        var speed = _s.ShaftHz * (1 + 0.015 * Math.Sin(2 * Math.PI * 0.05 * t + _phaseY));
        _shaftPhase += 2 * Math.PI * speed * dt;
        var p = _shaftPhase;

        var x = _baseAmplitude * Math.Sin(p + _phaseX) + 0.08 * Math.Sin(2 * p + 0.5) + 0.04 * Math.Sin(3 * p + 1.3);
        var y = _baseAmplitude * Math.Cos(p + _phaseX) + 0.06 * Math.Sin(3 * p + 1.1);
        var z = 9.81 + 0.1 * Math.Sin(p + 0.3);

        var fault = ActiveFault;
        var severity = _s.Severity;
        if (fault == MachineFault.Imbalance)
        {
            var a = 0.9 * severity;
            x += a * Math.Sin(p + _phaseX + 0.2);
            y += a * Math.Cos(p + _phaseX + 0.2);
            z += 0.15 * severity * Math.Sin(p);
        }
        else if (fault == MachineFault.Bearing)
        {
            var ring = BearingImpacts(t, severity);
            x += 0.35 * ring;
            y += 1.0 * ring;
            z += 0.7 * ring;
        }

        var hours = t / 3600.0;
        var gain = 1 + _s.DriftGainPerHour * hours;
        var offset = _s.DriftOffsetPerHour * hours;
        var sigma = _s.Noise;
        values[0] = (float)(gain * (x + sigma * Gaussian()) + offset);
        values[1] = (float)(gain * (y + sigma * Gaussian()));
        values[2] = (float)(gain * (z + sigma * Gaussian()) + 0.5 * offset);
        return true;
    }

    private double BearingImpacts(double t, double severity)
    {
        if (double.IsNaN(_nextImpact))
        {
            _nextImpact = Math.Max(t, _s.FaultAtSeconds);
        }

        if (t >= _nextImpact)
        {
            _prevImpactTime = _impactTime;
            _prevImpactAmp = _impactAmp;
            _impactTime = _nextImpact;
            _impactAmp = 2.0 * severity * (0.75 + 0.5 * _rng.NextDouble());
            // 1 % jitter: rolling elements slip, impacts are not perfectly periodic.
            _nextImpact += 1.0 / _bpfo * (1 + 0.01 * (2 * _rng.NextDouble() - 1));
        }

        return Ring(t - _impactTime, _impactAmp) + Ring(t - _prevImpactTime, _prevImpactAmp);
    }

    private static double Ring(double since, double amp)
    {
        const double resonanceHz = 280;
        const double decaySeconds = 0.004;
        return since is < 0 or > 0.03 ? 0 : amp * Math.Exp(-since / decaySeconds) * Math.Sin(2 * Math.PI * resonanceHz * since);
    }

    private double Gaussian()
    {
        // Box–Muller; one value per call keeps the stream simple and deterministic.
        var u1 = 1.0 - _rng.NextDouble();
        var u2 = _rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    public void Dispose() { }
}

public enum MachineFault
{
    None,
    Imbalance,
    Bearing,
}

public sealed record VibrationSettings
{
    public int Seed { get; init; } = 1;
    public double SampleRateHz { get; init; } = 1000;
    public double ShaftHz { get; init; } = 25;
    public double Noise { get; init; } = 0.15;
    public MachineFault Fault { get; init; } = MachineFault.None;
    public double FaultAtSeconds { get; init; }
    public double Severity { get; init; } = 1.0;
    public double DriftGainPerHour { get; init; }
    public double DriftOffsetPerHour { get; init; }

    public static VibrationSettings FromSpec(SensorSpec spec, int seed, string where)
    {
        var fault = spec.GetString("fault")?.ToLowerInvariant() switch
        {
            null or "none" => MachineFault.None,
            "imbalance" => MachineFault.Imbalance,
            "bearing" => MachineFault.Bearing,
            var other => throw new ConfigurationException($"{where}.fault", $"'{other}' is not one of none, imbalance, bearing"),
        };
        var s = new VibrationSettings
        {
            Seed = (int)spec.GetDouble("seed", seed, where),
            SampleRateHz = spec.GetDouble("rate", 1000, where),
            ShaftHz = spec.GetDouble("shaft-hz", 25, where),
            Noise = spec.GetDouble("noise", 0.15, where),
            Fault = fault,
            FaultAtSeconds = spec.GetDouble("fault-at", 0, where),
            Severity = spec.GetDouble("severity", 1.0, where),
            DriftGainPerHour = spec.GetDouble("drift-gain", 0, where),
            DriftOffsetPerHour = spec.GetDouble("drift-offset", 0, where),
        };
        if (s.SampleRateHz <= 0) throw new ConfigurationException($"{where}.rate", "must be > 0 Hz");
        if (s.ShaftHz <= 0 || s.ShaftHz * 3.585 * 2 > s.SampleRateHz)
            throw new ConfigurationException($"{where}.shaft-hz", $"{s.ShaftHz} Hz must be > 0 and its bearing frequency below Nyquist at {s.SampleRateHz} Hz");
        if (s.Noise < 0) throw new ConfigurationException($"{where}.noise", "must be >= 0");
        return s;
    }
}
