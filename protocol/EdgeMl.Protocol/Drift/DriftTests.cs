using EdgeMl.Protocol.Packages;

namespace EdgeMl.Protocol.Drift;

/// <summary>Thresholds for the drift tests; defaults follow common practice, a manifest may override them per model.</summary>
public sealed class DriftThresholds
{
    public double PsiModerate { get; set; } = 0.1;
    public double PsiMajor { get; set; } = 0.25;
    public double JensenShannon { get; set; } = 0.1;
    public double WassersteinNormed { get; set; } = 0.1;
    /// <summary>KS significance level for the whole model; each of m features is tested at Alpha/m (Bonferroni).</summary>
    public double KsAlpha { get; set; } = 0.05;
    /// <summary>The model is "drifting" when at least this share of its features drift.</summary>
    public double DriftingShare { get; set; } = 0.5;
}

/// <summary>One test on one feature: which test, the statistic, the threshold it is held to, and whether it is over.</summary>
public sealed record DriftTestResult(string Test, double Statistic, double Threshold, bool Over, double? PValue = null);

/// <summary>A feature's verdict over a window: ok, moderate or major, with every test that led to it.</summary>
public sealed record FeatureDrift(string Feature, string Status, long Samples, IReadOnlyList<DriftTestResult> Tests);

/// <summary>
/// Drift statistics of a live window (sketches) against the training baseline of the model package.
/// Histogram tests (PSI, Jensen–Shannon, chi-square, Hellinger) are exact over merged windows; KS and
/// Wasserstein come from the KLL sketch (rank error about 1.65/k). A feature drifts when the KS and the
/// chi-square tests are both significant (Bonferroni across the model's features) and an effect size is over its threshold
/// (PSI or normed Wasserstein) — significance alone flags trivial shifts in big windows,
/// effect size alone flags noise in small ones. Major: significant and PSI over the major threshold.
/// </summary>
public static class DriftStatistics
{
    private const double Floor = 1e-4; // share given to an empty bin, so logs stay finite

    public static FeatureDrift Evaluate(FeatureBaseline baseline, FeatureSketch live, DriftThresholds t, int features)
    {
        var p = Shares(baseline.Counts);
        var q = Shares(live.Histogram.Counts);
        var psi = Psi(p, q);
        var js = JensenShannonDistance(p, q);
        var hellinger = Hellinger(p, q);
        var (chi2, chi2P) = ChiSquare(baseline.Counts, live.Histogram.Counts);
        var ks = KolmogorovSmirnov(baseline, live.Kll);
        var ksP = KsPValue(ks, baseline.Count, live.Kll.N);
        var alpha = t.KsAlpha / Math.Max(1, features);
        var wasserstein = WassersteinNormed(baseline, live.Kll);
        var tests = new List<DriftTestResult>
        {
            new("psi", psi, t.PsiModerate, psi >= t.PsiModerate),
            new("jensen_shannon", js, t.JensenShannon, js >= t.JensenShannon),
            new("wasserstein_normed", wasserstein, t.WassersteinNormed, wasserstein >= t.WassersteinNormed),
            new("ks", ks, alpha, ksP < alpha, ksP),
            new("chi_square", chi2, alpha, chi2P < alpha, chi2P),
            new("hellinger", hellinger, double.NaN, false),
        };
        // Two lines of evidence, the CDF's (KS) and the bins' (chi-square), both at the Bonferroni level.
        var significant = ksP < alpha && chi2P < alpha;
        // Jensen–Shannon is reported but does not decide: at a few hundred samples its noise alone passes 0.1
        // in about one window in twenty (measured), PSI's and Wasserstein's far less often.
        var effect = psi >= t.PsiModerate || wasserstein >= t.WassersteinNormed;
        var status = live.Moments.Count == 0 ? "no data"
            : significant && psi >= t.PsiMajor ? "major"
            : significant && effect ? "moderate"
            : "ok";
        return new FeatureDrift(baseline.Name, status, live.Moments.Count, tests);
    }

    public static double[] Shares(IReadOnlyList<long> counts)
    {
        double total = counts.Sum();
        return counts.Select(c => total > 0 ? c / total : 0).ToArray();
    }

    /// <summary>Population stability index: Σ (q − p) ln(q / p), empty bins floored at 1e-4.</summary>
    public static double Psi(IReadOnlyList<double> expected, IReadOnlyList<double> actual)
    {
        double sum = 0;
        for (var i = 0; i < expected.Count; i++)
        {
            var p = Math.Max(expected[i], Floor);
            var q = Math.Max(actual[i], Floor);
            sum += (q - p) * Math.Log(q / p);
        }

        return sum;
    }

    /// <summary>Jensen–Shannon distance (the square root of the divergence, log base 2): 0 same, 1 disjoint.</summary>
    public static double JensenShannonDistance(IReadOnlyList<double> p, IReadOnlyList<double> q)
    {
        double d = 0;
        for (var i = 0; i < p.Count; i++)
        {
            var m = (p[i] + q[i]) / 2;
            if (p[i] > 0) d += 0.5 * p[i] * Math.Log2(p[i] / m);
            if (q[i] > 0) d += 0.5 * q[i] * Math.Log2(q[i] / m);
        }

        return Math.Sqrt(Math.Max(0, d));
    }

    public static double Hellinger(IReadOnlyList<double> p, IReadOnlyList<double> q)
    {
        double bc = 0;
        for (var i = 0; i < p.Count; i++) bc += Math.Sqrt(p[i] * q[i]);
        return Math.Sqrt(Math.Max(0, 1 - bc));
    }

    /// <summary>Chi-square goodness of fit of the live counts to the baseline's shares; bins the baseline never saw are left out.</summary>
    public static (double Statistic, double PValue) ChiSquare(IReadOnlyList<long> expectedCounts, IReadOnlyList<long> observed)
    {
        double total = observed.Sum(), baseTotal = expectedCounts.Sum(), chi = 0;
        var df = -1;
        for (var i = 0; i < observed.Count; i++)
        {
            if (expectedCounts[i] == 0) continue;
            var e = total * expectedCounts[i] / baseTotal;
            chi += (observed[i] - e) * (observed[i] - e) / e;
            df++;
        }

        return total == 0 || df < 1 ? (0, 1) : (chi, 1 - RegularizedGammaP(df / 2.0, chi / 2));
    }

    /// <summary>
    /// The baseline's CDF, piecewise linear through its knots: the bin edges with their cumulative counts, and
    /// the stored quantiles (1 %, 5 %, …, 99 %), which pin the tails down where the outer bins are wide.
    /// </summary>
    public static double BaselineCdf(FeatureBaseline b, double x)
    {
        var (xs, ps) = Knots(b);
        if (x < xs[0]) return 0;
        if (x >= xs[^1]) return 1;
        var i = Array.BinarySearch(xs, x);
        if (i >= 0)
        {
            while (i + 1 < xs.Length && xs[i + 1] == x) i++;
            return ps[i];
        }

        i = ~i; // xs[i-1] < x < xs[i]
        return ps[i - 1] + (ps[i] - ps[i - 1]) * (x - xs[i - 1]) / (xs[i] - xs[i - 1]);
    }

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<FeatureBaseline, Tuple<double[], double[]>> KnotCache = new();

    private static (double[] Xs, double[] Ps) Knots(FeatureBaseline b)
    {
        var cached = KnotCache.GetValue(b, baseline =>
        {
            var points = new List<(double X, double P)>();
            double total = baseline.Counts.Sum(), below = baseline.Counts.Count > 0 ? baseline.Counts[0] : 0;
            points.Add((baseline.Edges[0], below / total));
            for (var i = 1; i < baseline.Edges.Count; i++)
            {
                below += baseline.Counts[i];
                points.Add((baseline.Edges[i], below / total));
            }

            for (var i = 0; i < Math.Min(baseline.Quantiles.Count, baseline.QuantileProbabilities.Count); i++)
            {
                points.Add((baseline.Quantiles[i], baseline.QuantileProbabilities[i]));
            }

            points.Sort((a, c) => a.X != c.X ? a.X.CompareTo(c.X) : a.P.CompareTo(c.P));
            var xs = points.Select(p => p.X).ToArray();
            var ps = new double[points.Count];
            for (var i = 0; i < ps.Length; i++) ps[i] = Math.Max(i > 0 ? ps[i - 1] : 0, Math.Min(1, points[i].P));
            ps[^1] = 1; // at or above the last edge: everything the reference saw
            return Tuple.Create(xs, ps);
        });
        return (cached.Item1, cached.Item2);
    }

    /// <summary>KS distance: the largest gap between the live CDF (KLL) and the baseline's, checked at every step of either.</summary>
    public static double KolmogorovSmirnov(FeatureBaseline b, KllSketch live)
    {
        if (live.N == 0) return 0;
        var (xs, cum) = live.SortedView();
        double d = 0, before = 0;
        for (var i = 0; i < xs.Length; i++)
        {
            var f = BaselineCdf(b, xs[i]);
            d = Math.Max(d, Math.Max(Math.Abs(cum[i] - f), Math.Abs(before - f)));
            before = cum[i];
        }

        foreach (var e in b.Edges)
        {
            d = Math.Max(d, Math.Abs(live.Cdf(e) - BaselineCdf(b, e)));
        }

        return d;
    }

    /// <summary>Asymptotic two-sample KS p-value (Stephens' correction) for samples of n and m.</summary>
    public static double KsPValue(double d, long n, long m)
    {
        if (n == 0 || m == 0) return 1;
        var ne = (double)n * m / (n + m);
        var lambda = (Math.Sqrt(ne) + 0.12 + 0.11 / Math.Sqrt(ne)) * d;
        if (lambda < 0.2) return 1;
        double sum = 0;
        for (var j = 1; j <= 100; j++)
        {
            var term = Math.Exp(-2 * j * j * lambda * lambda);
            sum += (j % 2 == 1 ? 2 : -2) * term;
            if (term < 1e-12) break;
        }

        return Math.Clamp(sum, 0, 1);
    }

    /// <summary>Wasserstein-1 distance ∫|F_live − F_base| dx, divided by the baseline's standard deviation.</summary>
    public static double WassersteinNormed(FeatureBaseline b, KllSketch live)
    {
        if (live.N == 0) return 0;
        var (xs, cum) = live.SortedView();
        var grid = xs.Select(x => (double)x).Concat(b.Edges).Distinct().Order().ToArray();
        double w = 0;
        for (var i = 0; i + 1 < grid.Length; i++)
        {
            // On [grid[i], grid[i+1]) the live CDF is flat; the baseline's is linear: average it over the interval.
            var fLive = LiveCdfAt(xs, cum, grid[i]);
            var mid = (grid[i] + grid[i + 1]) / 2;
            w += Math.Abs(fLive - BaselineCdf(b, mid)) * (grid[i + 1] - grid[i]);
        }

        var sd = Math.Sqrt(b.Variance);
        return sd > 0 ? w / sd : w;
    }

    private static double LiveCdfAt(float[] xs, double[] cum, double x)
    {
        int lo = 0, hi = xs.Length - 1, found = -1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >> 1;
            if (xs[mid] <= x)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return found < 0 ? 0 : cum[found];
    }

    /// <summary>P(a, x), the regularized lower incomplete gamma function (series below a+1, continued fraction above).</summary>
    public static double RegularizedGammaP(double a, double x)
    {
        if (x <= 0) return 0;
        var lnGammaA = LogGamma(a);
        if (x < a + 1)
        {
            double sum = 1 / a, term = sum;
            for (var n = 1; n < 500; n++)
            {
                term *= x / (a + n);
                sum += term;
                if (Math.Abs(term) < Math.Abs(sum) * 1e-15) break;
            }

            return sum * Math.Exp(-x + a * Math.Log(x) - lnGammaA);
        }

        // Lentz's continued fraction for Q(a, x).
        double b = x + 1 - a, c = 1 / 1e-300, d = 1 / b, h = d;
        for (var i = 1; i < 500; i++)
        {
            var an = -i * (i - a);
            b += 2;
            d = an * d + b;
            if (Math.Abs(d) < 1e-300) d = 1e-300;
            c = b + an / c;
            if (Math.Abs(c) < 1e-300) c = 1e-300;
            d = 1 / d;
            var delta = d * c;
            h *= delta;
            if (Math.Abs(delta - 1) < 1e-15) break;
        }

        return 1 - Math.Exp(-x + a * Math.Log(x) - lnGammaA) * h;
    }

    private static double LogGamma(double x)
    {
        // Lanczos approximation (g = 7, n = 9).
        double[] g = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
        if (x < 0.5) return Math.Log(Math.PI / Math.Sin(Math.PI * x)) - LogGamma(1 - x);
        x -= 1;
        var a = g[0];
        var t = x + 7.5;
        for (var i = 1; i < 9; i++) a += g[i] / (x + i);
        return 0.5 * Math.Log(2 * Math.PI) + (x + 0.5) * Math.Log(t) - t + Math.Log(a);
    }
}
