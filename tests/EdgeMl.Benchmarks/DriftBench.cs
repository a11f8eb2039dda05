using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeMl.Protocol.Drift;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.Benchmarks;

/// <summary>The drift issue's figures, each next to a baseline measured in the same run.</summary>
public static class DriftBench
{
    private static double Gauss(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    /// <summary>N(0, 1) with decile edges, as a package's baseline would have it.</summary>
    private static FeatureBaseline Baseline()
    {
        double[] deciles = [-4, -1.2816, -0.8416, -0.5244, -0.2533, 0, 0.2533, 0.5244, 0.8416, 1.2816, 4];
        var counts = new List<long> { 0 };
        counts.AddRange(Enumerable.Repeat(100_000L, 10));
        counts.Add(0);
        return new FeatureBaseline { Name = "x", Count = 1_000_000, Mean = 0, Variance = 1, Min = -4, Max = 4, Edges = [.. deciles], Counts = counts };
    }

    public static int Run(string outPath)
    {
        var baseline = Baseline();
        var rows = new List<(string Key, string Figure, string Target, string Note)>();
        var json = new JsonObject();
        var r = new Random(2026);

        // ks_error: 100 devices × 10,000 samples, each a little shifted; merged KLL vs the exact empirical CDF.
        var merged = FeatureSketch.For(baseline);
        var all = new double[1_000_000];
        for (var d = 0; d < 100; d++)
        {
            var s = FeatureSketch.For(baseline, seed: (ulong)d + 1);
            var shift = (d % 10) * 0.03;
            for (var i = 0; i < 10_000; i++)
            {
                var x = shift + Gauss(r);
                s.Add(x);
                all[d * 10_000 + i] = x;
            }

            merged.Merge(FeatureSketch.FromData(s.ToData(), baseline.Edges)); // through the wire form, as the hub does
        }

        var exactClock = Stopwatch.StartNew();
        Array.Sort(all);
        double exactKs = 0;
        for (var i = 0; i < all.Length; i++)
        {
            var f = DriftStatistics.BaselineCdf(baseline, all[i]);
            exactKs = Math.Max(exactKs, Math.Max(Math.Abs((i + 1.0) / all.Length - f), Math.Abs((double)i / all.Length - f)));
        }

        var exactSeconds = exactClock.Elapsed.TotalSeconds;
        var sketchKs = DriftStatistics.KolmogorovSmirnov(baseline, merged.Kll);
        var ksError = Math.Abs(sketchKs - exactKs);
        var rankError = Enumerable.Range(1, 999).Select(i => all[i * all.Length / 1000]).Max(x => Math.Abs(merged.Kll.Cdf(x) - (Array.BinarySearch(all, x) + 1.0) / all.Length));
        json["ks_error"] = Math.Round(ksError, 5);
        json["ks_exact"] = Math.Round(exactKs, 5);
        json["ks_sketch"] = Math.Round(sketchKs, 5);
        json["kll_rank_error_max"] = Math.Round(rankError, 5);
        rows.Add(("ks_error", $"{ksError:0.0000}", "≤ 0.015", $"KS {sketchKs:0.0000} from 100 merged sketches vs {exactKs:0.0000} exact over 1M samples (exact needs all of them: {exactSeconds * 1000:0} ms to sort); max rank error {rankError:0.0000}"));

        // merge_10k_s: 10,000 device-window sketches (300 samples each) of one feature, decoded from the wire and merged.
        var wire = new List<FeatureSketchData>(10_000);
        for (var w = 0; w < 10_000; w++)
        {
            var s = FeatureSketch.For(baseline, seed: (ulong)w + 7);
            for (var i = 0; i < 300; i++) s.Add(Gauss(r));
            wire.Add(s.ToData());
        }

        var mergeClock = Stopwatch.StartNew();
        var fleet = FeatureSketch.For(baseline);
        foreach (var data in wire) fleet.Merge(FeatureSketch.FromData(data, baseline.Edges));
        var mergeSeconds = mergeClock.Elapsed.TotalSeconds;
        var raw = new List<double>(3_000_000);
        var concatClock = Stopwatch.StartNew();
        for (var w = 0; w < 10_000; w++) for (var i = 0; i < 300; i++) raw.Add(Gauss(r));
        raw.Sort();
        var concatSeconds = concatClock.Elapsed.TotalSeconds;
        json["merge_10k_s"] = Math.Round(mergeSeconds, 3);
        json["merge_exact_baseline_s"] = Math.Round(concatSeconds, 3);
        rows.Add(("merge_10k_s", $"{mergeSeconds:0.000}", "≤ 1", $"decode + merge; keeping the 3M raw samples and sorting them instead: {concatSeconds:0.000} s ({concatSeconds / mergeSeconds:0.0}x)"));

        // update_ns: all sketches of one feature per sample, median of 5 rounds of 2M; baseline: appending to a list.
        var values = Enumerable.Range(0, 2_000_000).Select(_ => Gauss(r)).ToArray();
        var rounds = new List<double>();
        var listRounds = new List<double>();
        for (var round = 0; round < 5; round++)
        {
            var s = FeatureSketch.For(baseline, seed: (ulong)round + 99);
            var clock = Stopwatch.StartNew();
            foreach (var v in values) s.Add(v);
            rounds.Add(clock.Elapsed.TotalNanoseconds / values.Length);
            var list = new List<double>();
            clock.Restart();
            foreach (var v in values) list.Add(v);
            listRounds.Add(clock.Elapsed.TotalNanoseconds / values.Length);
        }

        var updateNs = Median(rounds);
        var listNs = Median(listRounds);
        json["update_ns"] = Math.Round(updateNs, 1);
        json["update_list_append_ns"] = Math.Round(listNs, 1);
        rows.Add(("update_ns", $"{updateNs:0.0}", "≤ 200", $"moments + histogram + KLL per sample; a bare List.Add: {listNs:0.0} ns ({updateNs / listNs:0.0}x)"));

        // detect_windows and false_alarm_rate: windows of 300 samples, 3 features (Bonferroni), default thresholds.
        var t = new DriftThresholds();
        var detect = new List<int>();
        for (var run = 0; run < 200; run++)
        {
            for (var w = 1; w <= 20; w++)
            {
                var s = FeatureSketch.For(baseline, seed: (ulong)(run * 100 + w));
                for (var i = 0; i < 300; i++) s.Add(0.5 + Gauss(r));
                if (DriftStatistics.Evaluate(baseline, s, t, features: 3).Status == "ok") continue;
                detect.Add(w);
                break;
            }
        }

        var flagged = 0;
        const int stationary = 10_000;
        for (var w = 0; w < stationary; w++)
        {
            var s = FeatureSketch.For(baseline, seed: (ulong)w + 500_000);
            for (var i = 0; i < 300; i++) s.Add(Gauss(r));
            if (DriftStatistics.Evaluate(baseline, s, t, features: 3).Status != "ok") flagged++;
        }

        var worstDetect = detect.Count == 200 ? detect.Max() : 99;
        json["detect_windows"] = worstDetect;
        json["detect_windows_median"] = Median(detect.Select(d => (double)d).ToList());
        json["false_alarm_rate"] = Math.Round((double)flagged / stationary, 4);
        rows.Add(("detect_windows", $"{worstDetect}", "≤ 3", $"worst of 200 seeded runs of a 0.5 σ shift (median {Median(detect.Select(d => (double)d).ToList()):0})"));
        rows.Add(("false_alarm_rate", $"{(double)flagged / stationary:0.0000}", "≤ 0.01", $"{flagged} of {stationary:N0} stationary windows flagged"));

        Console.WriteLine($"{"key",-18} {"figure",9} {"target",8}  note");
        foreach (var (key, figure, target, note) in rows) Console.WriteLine($"{key,-18} {figure,9} {target,8}  {note}");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
        File.WriteAllText(outPath, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {outPath}");
        return 0;
    }

    private static double Median(List<double> xs)
    {
        var sorted = xs.Order().ToList();
        return sorted.Count == 0 ? double.NaN : sorted[sorted.Count / 2];
    }
}
