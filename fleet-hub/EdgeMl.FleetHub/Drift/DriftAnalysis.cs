using System.Text.Json;
using EdgeMl.Protocol.Drift;
using EdgeMl.Protocol.Json;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.FleetHub.Drift;

/// <summary>
/// Merges drift reports — one device's windows, a group's, the fleet's — feature by feature (exact histograms
/// and moments, KLL within its bound) and tests the merge against the model's baseline. The trend compares
/// the PSI of the older and the newer half of the windows.
/// </summary>
public static class DriftAnalysis
{
    public static DriftReport? Parse(string json)
    {
        try
        {
            return JsonSerializer.Deserialize(json, CompactJsonContext.Default.DriftReport);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Status of windows of a model the hub's registry does not know: stored and shown, not judged.</summary>
    public const string UnknownBaseline = "unknown baseline";

    /// <summary>
    /// Tests the windows of the newest model version among them against <b>that version's baseline in the hub's
    /// registry</b> (<paramref name="baselineOf"/>: name, version → the package manifest's baseline), never against a
    /// baseline a device sent: a device cannot declare its own drift away. No registry baseline: <see cref="UnknownBaseline"/>.
    /// </summary>
    public static DriftView Analyze(string scope, IReadOnlyList<(string Device, DriftReport Report)> windows, Func<string, string, DriftBaseline?> baselineOf)
    {
        if (windows.Count == 0) return new DriftView(scope, "no data", null, null, 0, 0, null, null, 0, [], [], []);
        // One model version at a time: the newest one seen (a rollout mixes versions; their baselines differ).
        var latest = windows.MaxBy(w => w.Report.To).Report;
        var same = windows.Where(w => w.Report.Model == latest.Model && w.Report.Version == latest.Version).OrderBy(w => w.Report.To).ToList();
        var labels = new Dictionary<string, long>();
        foreach (var (_, r) in same)
        {
            foreach (var (k, v) in r.Labels) labels[k] = labels.GetValueOrDefault(k) + v;
        }

        var devices = same.Select(w => w.Device).Distinct().Count();
        if (baselineOf(latest.Model, latest.Version) is not { } baseline)
        {
            return new DriftView(scope, UnknownBaseline, latest.Model, latest.Version, same.Count, devices, same[0].Report.From, same[^1].Report.To, 0, [], [], labels);
        }

        var thresholds = baseline.Thresholds ?? new DriftThresholds();
        var features = Test(same, baseline.Features, r => r.Features, thresholds, baseline.Features.Count);
        var outputs = Test(same, baseline.Outputs, r => r.Outputs, thresholds, baseline.Features.Count);
        var drifting = features.Count == 0 ? 0 : (double)features.Count(f => f.Status is "moderate" or "major") / features.Count;
        var status = features.Any(f => f.Status == "major") && drifting >= thresholds.DriftingShare ? "major"
            : features.Any(f => f.Status is "moderate" or "major") ? (drifting >= thresholds.DriftingShare ? "moderate" : "watch")
            : "ok";
        return new DriftView(scope, status, latest.Model, latest.Version, same.Count, devices,
            same[0].Report.From, same[^1].Report.To, drifting, features, outputs, labels);
    }

    private static List<FeatureDriftView> Test(List<(string Device, DriftReport Report)> windows, List<FeatureBaseline> baselines,
        Func<DriftReport, List<FeatureSketchData>> pick, DriftThresholds thresholds, int featureCount)
    {
        var result = new List<FeatureDriftView>();
        foreach (var b in baselines.Where(b => b.Edges.Count >= 2))
        {
            FeatureSketch? all = null, older = null, newer = null;
            for (var i = 0; i < windows.Count; i++)
            {
                var data = pick(windows[i].Report).FirstOrDefault(f => f.Name == b.Name);
                if (data is null) continue;
                FeatureSketch sketch, half;
                try
                {
                    sketch = FeatureSketch.FromData(data, b.Edges);
                    half = FeatureSketch.FromData(data, b.Edges);
                }
                catch (Exception e) when (e is FormatException or ArgumentException)
                {
                    continue; // a window that does not fit the registry's baseline (another build of the model): not merged
                }

                Add(ref all, sketch);
                if (i < windows.Count / 2) Add(ref older, half);
                else Add(ref newer, half);
            }

            if (all is null) continue;
            var verdict = DriftStatistics.Evaluate(b, all, thresholds, featureCount);
            var trend = "steady";
            if (older is not null && newer is not null)
            {
                var psiOld = DriftStatistics.Psi(DriftStatistics.Shares(b.Counts), DriftStatistics.Shares(older.Histogram.Counts));
                var psiNew = DriftStatistics.Psi(DriftStatistics.Shares(b.Counts), DriftStatistics.Shares(newer.Histogram.Counts));
                trend = psiNew > psiOld * 1.5 && psiNew - psiOld > 0.02 ? "rising" : psiOld > psiNew * 1.5 && psiOld - psiNew > 0.02 ? "falling" : "steady";
            }

            result.Add(new FeatureDriftView(b.Name, verdict.Status, verdict.Samples, trend, all.Moments.Mean, Math.Sqrt(all.Moments.Variance),
                b.Mean, Math.Sqrt(b.Variance), verdict.Tests.Select(t => new TestView(t.Test, Round(t.Statistic), Round(t.Threshold), t.Over, t.PValue is { } p ? Round(p) : null)).ToList()));
        }

        return result;
    }

    private static void Add(ref FeatureSketch? into, FeatureSketch s)
    {
        if (into is null) into = s;
        else into.Merge(s);
    }

    private static double Round(double x) => double.IsNaN(x) ? 0 : Math.Round(x, 6);
}

/// <summary>Drift of a device, a group or the fleet over a time range. Status: ok, watch (some features drift), moderate, major.</summary>
public sealed record DriftView(
    string Scope, string Status, string? Model, string? Version, int Windows, int Devices, DateTimeOffset? From, DateTimeOffset? To,
    double DriftingShare, List<FeatureDriftView> Features, List<FeatureDriftView> Outputs, Dictionary<string, long> Labels);

public sealed record FeatureDriftView(string Feature, string Status, long Samples, string Trend, double Mean, double Sd, double BaselineMean, double BaselineSd, List<TestView> Tests);

public sealed record TestView(string Test, double Statistic, double Threshold, bool Over, double? PValue);
