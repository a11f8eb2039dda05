using EdgeMl.Protocol.Drift;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.Protocol.Tests.Drift;

/// <summary>The tests against values worked out by hand, and the detector's rates on seeded simulations.</summary>
public sealed class DriftStatisticsTests
{
    [Fact]
    public void Histogram_tests_match_hand_computed_values()
    {
        double[] p = [0.25, 0.25, 0.5];
        double[] q = [0.5, 0.25, 0.25];
        // PSI = (0.5-0.25)ln(2) + 0 + (0.25-0.5)ln(0.5) = 0.5 ln 2
        Assert.Equal(0.5 * Math.Log(2), DriftStatistics.Psi(p, q), 12);
        // JS: m = [0.375, 0.25, 0.375]; D = 0.5[0.25 log2(0.25/0.375) + 0.5 log2(0.5/0.375)] * 2 (symmetric)
        var d = 0.25 * Math.Log2(0.25 / 0.375) + 0.5 * Math.Log2(0.5 / 0.375);
        Assert.Equal(Math.Sqrt(d), DriftStatistics.JensenShannonDistance(p, q), 12);
        Assert.Equal(Math.Sqrt(1 - (Math.Sqrt(0.125) + 0.25 + Math.Sqrt(0.125))), DriftStatistics.Hellinger(p, q), 12);
        Assert.Equal(0, DriftStatistics.Psi(p, p), 12);
        Assert.Equal(1, DriftStatistics.JensenShannonDistance([1, 0], [0, 1]), 12);
        // Chi-square: expected 25/25/50 of 100, observed 50/25/25: (25²/25 + 0 + 25²/50) = 37.5, df 2 → p = e^(-37.5/2)
        var (chi, pv) = DriftStatistics.ChiSquare([25, 25, 50], [50, 25, 25]);
        Assert.Equal(37.5, chi, 9);
        Assert.Equal(Math.Exp(-37.5 / 2), pv, 9);
    }

    private static FeatureBaseline Uniform01() => new()
    {
        Name = "u", Count = 1_000_000, Mean = 0.5, Variance = 1.0 / 12, Min = 0, Max = 1,
        Edges = [0, 0.25, 0.5, 0.75, 1], Counts = [0, 250_000, 250_000, 250_000, 250_000, 0],
    };

    [Fact]
    public void Ks_and_wasserstein_match_hand_computed_values_for_a_shifted_uniform()
    {
        // Live: uniform on [0.2, 1.2) (every point weighted, a sketch that keeps all of them).
        var live = new KllSketch(2000);
        for (var i = 0; i < 1000; i++) live.Add(0.2 + i / 1000.0);
        // KS: sup |F_base(x) - F_live(x)| = 0.2 at x = 0.2 … 1; W1 = 0.2 (a shift), normed by sd = sqrt(1/12).
        Assert.Equal(0.2, DriftStatistics.KolmogorovSmirnov(Uniform01(), live), 2);
        Assert.Equal(0.2 / Math.Sqrt(1.0 / 12), DriftStatistics.WassersteinNormed(Uniform01(), live), 2);
        Assert.Equal(0.5, DriftStatistics.BaselineCdf(Uniform01(), 0.5), 12);
        Assert.Equal(0.1, DriftStatistics.BaselineCdf(Uniform01(), 0.1), 12);
    }

    [Fact]
    public void Ks_p_value_follows_the_kolmogorov_distribution()
    {
        // Q_KS(1.36) ≈ 0.049 (the classic 5% point); a tiny distance is not significant.
        var n = 10_000_000L;
        var m = 1000L;
        var ne = (double)n * m / (n + m);
        var d = 1.36 / (Math.Sqrt(ne) + 0.12 + 0.11 / Math.Sqrt(ne));
        Assert.Equal(0.049, DriftStatistics.KsPValue(d, n, m), 3);
        Assert.Equal(1, DriftStatistics.KsPValue(0.001, n, m));
    }

    private static (FeatureBaseline Baseline, Func<Random, double, double> Sample) NormalFeature()
    {
        // Baseline: N(0, 1) with decile edges.
        double[] deciles = [-3.5, -1.2816, -0.8416, -0.5244, -0.2533, 0, 0.2533, 0.5244, 0.8416, 1.2816, 3.5];
        var counts = new List<long> { 0 };
        counts.AddRange(Enumerable.Repeat(100_000L, 10));
        counts.Add(0);
        var b = new FeatureBaseline { Name = "x", Count = 1_000_000, Mean = 0, Variance = 1, Min = -3.5, Max = 3.5, Edges = [.. deciles], Counts = counts };
        return (b, (r, shift) => shift + Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble()));
    }

    [Fact]
    public void A_half_sigma_shift_is_flagged_within_three_windows_and_stationary_data_almost_never()
    {
        var (baseline, sample) = NormalFeature();
        var t = new DriftThresholds();
        var r = new Random(7);
        var falseAlarms = 0;
        const int windows = 1000;
        for (var w = 0; w < windows; w++)
        {
            var s = FeatureSketch.For(baseline, seed: (ulong)w + 1);
            for (var i = 0; i < 300; i++) s.Add(sample(r, 0));
            if (DriftStatistics.Evaluate(baseline, s, t, features: 3).Status != "ok") falseAlarms++;
        }

        Assert.True(falseAlarms <= windows / 100, $"{falseAlarms} of {windows} stationary windows flagged");

        var detected = 0;
        for (var run = 0; run < 50; run++)
        {
            for (var w = 1; w <= 3; w++)
            {
                var s = FeatureSketch.For(baseline, seed: (ulong)(run * 10 + w));
                for (var i = 0; i < 300; i++) s.Add(sample(r, 0.5));
                if (DriftStatistics.Evaluate(baseline, s, t, features: 3).Status == "ok") continue;
                detected++;
                break;
            }
        }

        Assert.Equal(50, detected);
    }

    [Fact]
    public void Page_hinkley_raises_on_a_sudden_change_and_stays_quiet_on_a_stationary_stream()
    {
        var r = new Random(11);
        double Gauss() => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());
        var ph = new PageHinkley(0.9, 0.05);
        for (var i = 0; i < 100_000; i++) Assert.Equal(0, ph.Add(0.9 + 0.05 * Gauss()));
        var after = -1;
        for (var i = 0; i < 1000 && after < 0; i++)
        {
            if (ph.Add(0.85 + 0.05 * Gauss()) != 0) after = i; // the score drops by one σ
        }

        Assert.InRange(after, 0, 200);
    }
}
