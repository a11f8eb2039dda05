namespace EdgeMl.Protocol.Drift;

/// <summary>
/// Counts over the baseline's fixed bin edges, plus an underflow bin (below the first edge) and an overflow bin
/// (at or above the last edge): bin i (1 ≤ i &lt; edges) holds [edges[i-1], edges[i]). Counts add, so any test
/// over merged histograms is exact.
/// </summary>
public sealed class FixedHistogram
{
    public FixedHistogram(IReadOnlyList<double> edges, long[]? counts = null)
    {
        if (edges.Count < 2) throw new ArgumentException("a histogram needs at least two edges", nameof(edges));
        for (var i = 1; i < edges.Count; i++)
        {
            if (!(edges[i] > edges[i - 1])) throw new ArgumentException($"bin edges must increase (edge {i}: {edges[i]} after {edges[i - 1]})", nameof(edges));
        }

        Edges = edges.ToArray();
        Counts = counts ?? new long[Edges.Length + 1];
        if (Counts.Length != Edges.Length + 1) throw new ArgumentException($"{Edges.Length} edges need {Edges.Length + 1} counts, not {Counts.Length}", nameof(counts));
    }

    public double[] Edges { get; }
    public long[] Counts { get; }
    public long Total => Counts.Sum();

    public int Bin(double x)
    {
        var e = Edges;
        if (x < e[0]) return 0;
        if (x >= e[^1]) return e.Length;
        int lo = 0, hi = e.Length - 1; // e[lo] <= x < e[hi]
        while (hi - lo > 1)
        {
            var mid = (lo + hi) >> 1;
            if (x < e[mid]) hi = mid;
            else lo = mid;
        }

        return lo + 1;
    }

    public void Add(double x)
    {
        if (!double.IsNaN(x)) Counts[Bin(x)]++;
    }

    public void Merge(FixedHistogram other)
    {
        if (!other.Edges.AsSpan().SequenceEqual(Edges)) throw new InvalidOperationException("histograms over different bin edges cannot be merged");
        for (var i = 0; i < Counts.Length; i++) Counts[i] += other.Counts[i];
    }
}
