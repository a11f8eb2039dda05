namespace EdgeMl.Protocol.Drift;

/// <summary>
/// Two-sided Page–Hinkley test on a stream standardized by the baseline (z = (x − mean) / sd): raises at once
/// when the running mean moves by more than <see cref="Delta"/> σ for long enough that the accumulated
/// evidence passes <see cref="Lambda"/>. After an alarm it starts over. The defaults (δ 0.25 σ, λ 50) keep a
/// stationary stream quiet for millions of samples (false-alarm odds about e^(-2δλ) per excursion) and catch a
/// 1 σ step within about 70 samples.
/// </summary>
public sealed class PageHinkley(double baselineMean, double baselineSd, double delta = 0.25, double lambda = 50)
{
    private double _mean;
    private long _n;
    private double _up, _upMin, _down, _downMax;

    public double Delta { get; } = delta;
    public double Lambda { get; } = lambda;

    /// <summary>Adds one value; +1 when an upward change is detected, −1 downward, 0 otherwise.</summary>
    public int Add(double x)
    {
        if (double.IsNaN(x)) return 0;
        var z = baselineSd > 0 ? (x - baselineMean) / baselineSd : x - baselineMean;
        _n++;
        _mean += (z - _mean) / _n;
        _up += z - _mean - Delta;
        _upMin = Math.Min(_upMin, _up);
        _down += z - _mean + Delta;
        _downMax = Math.Max(_downMax, _down);
        var alarm = _up - _upMin > Lambda ? 1 : _downMax - _down > Lambda ? -1 : 0;
        if (alarm != 0) Reset();
        return alarm;
    }

    public void Reset()
    {
        _mean = 0;
        _n = 0;
        _up = _upMin = _down = _downMax = 0;
    }
}
