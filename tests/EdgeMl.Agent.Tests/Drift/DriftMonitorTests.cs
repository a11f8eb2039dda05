using System.Text.Json;
using EdgeMl.Agent.Outbox;
using EdgeMl.Agent.Tests.Cli;
using EdgeMl.Protocol.Drift;
using EdgeMl.Protocol.Json;
using EdgeMl.Protocol.Wire;
using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Drift;

/// <summary>The agent sketches its inputs and outputs per reporting window into drift records, checked against the bundled model's baseline.</summary>
public sealed class DriftMonitorTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    private List<DriftReport> Reports(string data)
    {
        using var box = new DeviceOutbox(Path.Combine(data, "agent.db"), new OutboxSettings(), readOnly: true);
        return box.Peek(1000, [RecordClass.Drift])
            .Select(r => JsonSerializer.Deserialize(r.Payload, CompactJsonContext.Default.DriftReport)!).ToList();
    }

    private List<DriftReport> Run(string name, string sensor, int count)
    {
        var data = Path.Combine(_dir.Path, name);
        var (code, _, err) = AgentProcess.Agent("run", "--model", TestPackages.VibrationInt8, "--sensor", sensor, "--count", count.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--quiet", "--data", data, "--Agent:Pipeline:Realtime=true", "--Agent:Drift:WindowSeconds=1");
        Assert.True(code == 0, err);
        return Reports(data);
    }

    [Fact]
    public void Each_window_becomes_a_drift_record_of_every_channel_and_output_and_a_healthy_machine_tests_ok()
    {
        var reports = Run("healthy", "sim:vibration", 24); // about 3 s at 1 kHz, hop 128
        Assert.True(reports.Count >= 2, $"{reports.Count} windows");
        var first = reports[0];
        Assert.Equal(["ax", "ay", "az"], first.Features.Select(f => f.Name));
        Assert.Equal(["p_normal", "p_imbalance", "p_bearing_fault"], first.Outputs.Select(f => f.Name));
        Assert.Equal(24, reports.Sum(r => r.Labels.Values.Sum()));
        Assert.All(reports, r => Assert.True(r.To > r.From));
        Assert.True(reports.Sum(r => r.Features[0].Count) >= 24 * 128, "every sample of every window is in the sketches");

        // The hub's view: all windows merged, tested against the package's baseline.
        var baseline = first.Baseline.Features.Single(f => f.Name == "ax");
        var merged = FeatureSketch.FromData(reports[0].Features[0], baseline.Edges);
        foreach (var r in reports.Skip(1)) merged.Merge(FeatureSketch.FromData(r.Features[0], baseline.Edges));
        var verdict = DriftStatistics.Evaluate(baseline, merged, new DriftThresholds(), 3);
        Assert.True(verdict.Status == "ok", string.Join("; ", verdict.Tests.Select(t => $"{t.Test} {t.Statistic:0.0000} (p {t.PValue:0.####})")) + $" mean {merged.Moments.Mean:0.000} sd {Math.Sqrt(merged.Moments.Variance):0.000} vs {baseline.Mean:0.000} {Math.Sqrt(baseline.Variance):0.000}");
    }

    [Fact]
    public void A_remounted_sensor_with_an_offset_and_gain_change_tests_major()
    {
        var reports = Run("drifted", "sim:vibration,drift-offset=1200,drift-gain=600", 24); // per simulated hour: +1 offset, ×1.5 gain after 3 s
        var baseline = reports[0].Baseline.Features.Single(f => f.Name == "ax");
        var merged = FeatureSketch.FromData(reports[0].Features[0], baseline.Edges);
        foreach (var r in reports.Skip(1)) merged.Merge(FeatureSketch.FromData(r.Features[0], baseline.Edges));
        var verdict = DriftStatistics.Evaluate(baseline, merged, new DriftThresholds(), 3);
        Assert.Equal("major", verdict.Status);
        Assert.True(verdict.Tests.Single(t => t.Test == "psi").Statistic >= 0.25);
    }

    public void Dispose() => _dir.Dispose();
}
