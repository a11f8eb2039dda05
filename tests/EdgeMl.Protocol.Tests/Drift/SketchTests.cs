using EdgeMl.Protocol.Drift;

namespace EdgeMl.Protocol.Tests.Drift;

/// <summary>The sketches merge the way the hub needs: histograms and moments exactly, KLL within its rank bound.</summary>
public sealed class SketchTests
{
    private static double[] Normal(Random r, int n, double mean = 0, double sd = 1) =>
        Enumerable.Range(0, n).Select(_ => mean + sd * Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble())).ToArray();

    [Fact]
    public void Merged_histograms_equal_the_histogram_of_the_concatenated_data_exactly()
    {
        var r = new Random(1);
        double[] edges = [-2, -1, -0.5, 0, 0.5, 1, 2];
        var parts = Enumerable.Range(0, 37).Select(i => Normal(r, r.Next(0, 500), i * 0.01, 1 + i * 0.02)).ToList();
        var merged = new FixedHistogram(edges);
        foreach (var part in parts)
        {
            var h = new FixedHistogram(edges);
            foreach (var x in part) h.Add(x);
            merged.Merge(h);
        }

        var direct = new FixedHistogram(edges);
        foreach (var x in parts.SelectMany(p => p)) direct.Add(x);
        Assert.Equal(direct.Counts, merged.Counts);
        Assert.Equal(parts.Sum(p => p.Length), merged.Total);
        Assert.Equal(0, new FixedHistogram(edges).Bin(-2.5));
        Assert.Equal(1, new FixedHistogram(edges).Bin(-2)); // [e0, e1)
        Assert.Equal(7, new FixedHistogram(edges).Bin(2)); // at or above the last edge: overflow
        Assert.Throws<InvalidOperationException>(() => merged.Merge(new FixedHistogram([0, 1])));
    }

    [Fact]
    public void Merged_moments_equal_the_direct_ones_to_1e_9_relative()
    {
        var r = new Random(2);
        var parts = Enumerable.Range(0, 50).Select(i => Normal(r, r.Next(1, 2000), 1000 + i, 0.001 + i)).ToList(); // large mean, small spread: cancellation-prone
        var merged = new Moments();
        foreach (var part in parts)
        {
            var m = new Moments();
            foreach (var x in part) m.Add(x);
            m.Add(double.NaN);
            merged.Merge(m);
        }

        var all = parts.SelectMany(p => p).ToArray();
        var mean = all.Average();
        var variance = all.Sum(x => (x - mean) * (x - mean)) / all.Length;
        Assert.Equal(all.Length, merged.Count);
        Assert.Equal(50, merged.Missing);
        Assert.True(Math.Abs(merged.Mean - mean) / Math.Abs(mean) < 1e-9);
        Assert.True(Math.Abs(merged.Variance - variance) / variance < 1e-9);
        Assert.Equal(all.Min(), merged.Min);
        Assert.Equal(all.Max(), merged.Max);
    }

    [Theory]
    [InlineData("sorted")]
    [InlineData("reverse")]
    [InlineData("random")]
    [InlineData("zigzag")]
    public void Kll_rank_error_stays_within_its_bound_on_adversarial_orders(string order)
    {
        const int n = 200_000;
        var values = Enumerable.Range(0, n).Select(i => (double)i).ToArray();
        values = order switch
        {
            "sorted" => values,
            "reverse" => values.Reverse().ToArray(),
            "random" => values.OrderBy(_ => Random.Shared.Next()).ToArray(),
            _ => values.Select((v, i) => i % 2 == 0 ? v / 2 : n - 1 - v / 2).ToArray(),
        };
        var sketch = new KllSketch(200);
        foreach (var v in values) sketch.Add(v);
        Assert.Equal(n, sketch.N);
        Assert.True(sketch.Retained < 700, $"{sketch.Retained} items retained for k = 200");
        var worst = Enumerable.Range(1, 99).Select(i => i * n / 100.0).Max(x => Math.Abs(sketch.Cdf(x) - (Math.Floor(x) + 1) / n));
        Assert.True(worst <= 0.015, $"rank error {worst:0.0000} ({order})"); // ≈ 1.65/k = 0.008 with high probability
    }

    [Fact]
    public void Merging_many_kll_sketches_keeps_the_bound_and_the_wire_form_round_trips()
    {
        var r = new Random(3);
        var merged = new KllSketch(200);
        var all = new List<double>();
        for (var d = 0; d < 100; d++)
        {
            var part = Normal(r, 2000, d * 0.01);
            var s = new FeatureSketch("x", [-3, -1, 0, 1, 3], 200, (ulong)(d + 1));
            foreach (var x in part) s.Add(x);
            var wire = FeatureSketch.FromData(s.ToData(), [-3, -1, 0, 1, 3]); // through the wire form
            merged.Merge(wire.Kll);
            all.AddRange(part);
        }

        all.Sort();
        var worst = Enumerable.Range(1, 199).Select(i => all[i * all.Count / 200]).Max(x => Math.Abs(merged.Cdf(x) - (all.BinarySearch(x) + 1.0) / all.Count));
        Assert.True(worst <= 0.015, $"rank error {worst:0.0000} after 100 merges");
        Assert.Equal(200_000, merged.N);
    }

    [Fact]
    public void A_feature_report_stays_under_4_kb_however_long_the_window()
    {
        var r = new Random(4);
        var edges = Enumerable.Range(0, 11).Select(i => -2.5 + i * 0.5).ToArray();
        var s = new FeatureSketch("ax", edges);
        foreach (var x in Normal(r, 1_000_000)) s.Add(x);
        var json = System.Text.Json.JsonSerializer.Serialize(s.ToData(), Json.CompactJsonContext.Default.FeatureSketchData);
        Assert.True(json.Length <= 4096, $"{json.Length} bytes");
        var back = FeatureSketch.FromData(s.ToData(), edges);
        Assert.Equal(s.Histogram.Counts, back.Histogram.Counts);
        Assert.Equal(s.Kll.Cdf(0.3), back.Kll.Cdf(0.3));
        Assert.Equal(s.Moments.Mean, back.Moments.Mean);
    }
}
