namespace EdgeMl.Agent.Metrics;

/// <summary>
/// Inference latency as a Prometheus histogram: a count per bucket (upper bounds in seconds, ascending; one more bucket
/// for everything above the last), the sum of all values and their number. Recorded on the inference thread, read by
/// scrapes; a lock keeps each scrape's buckets, sum and count consistent with one another.
/// </summary>
public sealed class LatencyHistogram(double[] bounds)
{
    private readonly long[] _counts = new long[bounds.Length + 1];
    private readonly Lock _gate = new();
    private double _sum;

    /// <summary>Counts one value (seconds).</summary>
    public void Record(double seconds)
    {
        var i = Array.BinarySearch(bounds, seconds);
        if (i < 0) i = ~i; // the first bound above the value; a value equal to a bound belongs to that bound's bucket (le)
        lock (_gate)
        {
            _counts[i]++;
            _sum += seconds;
        }
    }

    /// <summary>The bounds, the cumulative count at each bound and then in all (length bounds + 1), and the sum.</summary>
    public (double[] Bounds, long[] Cumulative, double Sum) Read()
    {
        var cumulative = new long[_counts.Length];
        double sum;
        lock (_gate)
        {
            long running = 0;
            for (var i = 0; i < _counts.Length; i++)
            {
                running += _counts[i];
                cumulative[i] = running;
            }

            sum = _sum;
        }

        return (bounds, cumulative, sum);
    }
}
