namespace EdgeMl.Protocol.Drift;

/// <summary>
/// Count, missing (NaN) count, min, max, mean and variance of a stream: Welford's update, merged exactly with
/// Chan et al.'s parallel formula, so the moments of merged windows equal those of the concatenated data.
/// </summary>
public sealed class Moments
{
    public long Count { get; set; }
    public long Missing { get; set; }
    public double Min { get; set; } = double.PositiveInfinity;
    public double Max { get; set; } = double.NegativeInfinity;
    public double Mean { get; set; }
    /// <summary>Sum of squared deviations from the mean (M2); <see cref="Variance"/> is M2 / Count.</summary>
    public double M2 { get; set; }

    public double Variance => Count > 0 ? M2 / Count : 0;

    public void Add(double x)
    {
        if (double.IsNaN(x))
        {
            Missing++;
            return;
        }

        Count++;
        var delta = x - Mean;
        Mean += delta / Count;
        M2 += delta * (x - Mean);
        if (x < Min) Min = x;
        if (x > Max) Max = x;
    }

    public void Merge(Moments other)
    {
        Missing += other.Missing;
        if (other.Count == 0) return;
        if (Count == 0)
        {
            (Count, Mean, M2, Min, Max) = (other.Count, other.Mean, other.M2, other.Min, other.Max);
            return;
        }

        var n = Count + other.Count;
        var delta = other.Mean - Mean;
        Mean += delta * other.Count / n;
        M2 += other.M2 + delta * delta * ((double)Count * other.Count / n);
        Count = n;
        Min = Math.Min(Min, other.Min);
        Max = Math.Max(Max, other.Max);
    }

    public Moments Clone() => new() { Count = Count, Missing = Missing, Min = Min, Max = Max, Mean = Mean, M2 = M2 };
}
