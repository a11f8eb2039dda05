using EdgeMl.Protocol.Packages;

namespace EdgeMl.Protocol.Drift;

/// <summary>
/// Everything a device keeps about one input feature or model output over a reporting window: moments, a
/// histogram over the baseline's bin edges and a KLL sketch. Memory is fixed by the baseline's bin count and k,
/// not by how many samples the window saw; all three merge exactly (moments, histogram) or within the KLL bound.
/// </summary>
public sealed class FeatureSketch
{
    public FeatureSketch(string name, IReadOnlyList<double> edges, int k = 200, ulong seed = 0x9E3779B97F4A7C15)
    {
        Name = name;
        Histogram = new FixedHistogram(edges);
        Kll = new KllSketch(k, seed);
    }

    private FeatureSketch(string name, Moments moments, FixedHistogram histogram, KllSketch kll)
    {
        Name = name;
        Moments = moments;
        Histogram = histogram;
        Kll = kll;
    }

    public string Name { get; }
    public Moments Moments { get; } = new();
    public FixedHistogram Histogram { get; }
    public KllSketch Kll { get; }

    public static FeatureSketch For(FeatureBaseline baseline, int k = 200, ulong seed = 0x9E3779B97F4A7C15) => new(baseline.Name, baseline.Edges, k, seed);

    public void Add(double x)
    {
        Moments.Add(x);
        if (double.IsNaN(x)) return;
        Histogram.Counts[Histogram.Bin(x)]++;
        Kll.Add(x);
    }

    public void Merge(FeatureSketch other)
    {
        Moments.Merge(other.Moments);
        Histogram.Merge(other.Histogram);
        Kll.Merge(other.Kll);
    }

    /// <summary>The wire form: a few hundred bytes of counts and moments plus 4 bytes per retained KLL item (base64).</summary>
    public FeatureSketchData ToData()
    {
        var levels = Kll.Levels;
        var bytes = new byte[Kll.Retained * sizeof(float)];
        var at = 0;
        foreach (var level in levels)
        {
            foreach (var item in level)
            {
                BitConverter.TryWriteBytes(bytes.AsSpan(at), item);
                at += sizeof(float);
            }
        }

        return new FeatureSketchData
        {
            Name = Name,
            Count = Moments.Count,
            Missing = Moments.Missing,
            Min = Moments.Count > 0 ? Moments.Min : null,
            Max = Moments.Count > 0 ? Moments.Max : null,
            Mean = Moments.Mean,
            M2 = Moments.M2,
            Counts = [.. Histogram.Counts],
            KllK = Kll.K,
            KllN = Kll.N,
            KllLevels = levels.Select(l => l.Count).ToList(),
            // base64url: plain base64's '+' and '/' would each be escaped to six characters in JSON.
            KllItems = Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_'),
        };
    }

    /// <summary>Rebuilds a sketch from the wire; <paramref name="edges"/> are the baseline's (they do not travel with every window).</summary>
    public static FeatureSketch FromData(FeatureSketchData d, IReadOnlyList<double> edges)
    {
        var moments = new Moments { Count = d.Count, Missing = d.Missing, Mean = d.Mean, M2 = d.M2, Min = d.Min ?? double.PositiveInfinity, Max = d.Max ?? double.NegativeInfinity };
        if (d.Counts.Count != edges.Count + 1) throw new FormatException($"sketch '{d.Name}': {d.Counts.Count} histogram counts for {edges.Count} baseline edges");
        var histogram = new FixedHistogram(edges, [.. d.Counts]);
        var b64 = d.KllItems.Replace('-', '+').Replace('_', '/');
        var bytes = Convert.FromBase64String(b64.PadRight(b64.Length + (4 - b64.Length % 4) % 4, '='));
        if (bytes.Length != d.KllLevels.Sum() * sizeof(float)) throw new FormatException($"sketch '{d.Name}': {bytes.Length} bytes of KLL items for {d.KllLevels.Sum()} items");
        var levels = new List<float[]>();
        var at = 0;
        foreach (var size in d.KllLevels)
        {
            var level = new float[size];
            for (var i = 0; i < size; i++, at += sizeof(float)) level[i] = BitConverter.ToSingle(bytes, at);
            levels.Add(level);
        }

        var kll = KllSketch.FromLevels(d.KllK, d.KllN, d.Min is { } mn ? (float)mn : float.PositiveInfinity, d.Max is { } mx ? (float)mx : float.NegativeInfinity, levels);
        return new FeatureSketch(d.Name, moments, histogram, kll);
    }
}

/// <summary>A <see cref="FeatureSketch"/> on the wire.</summary>
public sealed class FeatureSketchData
{
    public string Name { get; set; } = "";
    public long Count { get; set; }
    public long Missing { get; set; }
    public double? Min { get; set; }
    public double? Max { get; set; }
    public double Mean { get; set; }
    public double M2 { get; set; }
    /// <summary>Histogram counts over the baseline's edges (underflow, bins, overflow).</summary>
    public List<long> Counts { get; set; } = [];
    public int KllK { get; set; }
    public long KllN { get; set; }
    public List<int> KllLevels { get; set; } = [];
    /// <summary>Retained KLL items, level by level, float32 little-endian, base64url without padding.</summary>
    public string KllItems { get; set; } = "";
}

/// <summary>
/// One device's drift report for one reporting window (<c>edgeml/{dev}/drift</c>): a sketch per input feature
/// and per numeric model output, exact counts of the predicted labels, and the model's baseline (its bin
/// edges and reference figures, so the hub can test and merge without the package).
/// </summary>
public sealed class DriftReport
{
    public string Model { get; set; } = "";
    public string Version { get; set; } = "";
    public Packages.DriftBaseline Baseline { get; set; } = new();
    public DateTimeOffset From { get; set; }
    public DateTimeOffset To { get; set; }
    public List<FeatureSketchData> Features { get; set; } = [];
    public List<FeatureSketchData> Outputs { get; set; } = [];
    public Dictionary<string, long> Labels { get; set; } = [];
}
