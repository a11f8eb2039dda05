using System.Text;
using EdgeMl.Agent.Outbox;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Protocol.Packages;
using EdgeMl.Protocol.Wire;
using EdgeMl.TestUtilities;
using Microsoft.Extensions.Time.Testing;

namespace EdgeMl.Agent.Tests.Outbox;

/// <summary>
/// A full data directory on a real small file system (tmpfs): records are dropped and counted as disk-full, the
/// store says why, nothing hangs, and storing resumes by itself when space comes back.
/// </summary>
public sealed class DiskFullTests
{
    private static byte[] Record(int i) => Encoding.UTF8.GetBytes($"{{\"i\":{i}}}".PadRight(900, ' '));

    [SkippableFact]
    public void A_full_disk_drops_and_counts_records_as_disk_full_and_storing_resumes_by_itself_when_space_comes_back()
    {
        using var fs = SmallFileSystem.TryMount(2048, out var whyNot);
        Skip.If(fs is null, whyNot);
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-11-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        var path = Path.Combine(fs!.Path, "agent.db");
        using var box = new DeviceOutbox(path, new OutboxSettings(), time);
        fs.Fill(leaveBytes: 256 * 1024);

        long stored = 0, dropped = 0;
        for (var i = 0; i < 2000 && dropped < 50; i++)
        {
            if (box.Append(RecordClass.Telemetry, Record(i)) > 0) stored++;
            else dropped++;
        }

        Assert.True(stored > 0, "records fit while there was room");
        Assert.Equal(50, dropped);
        Assert.True(box.DiskFull);
        Assert.StartsWith("data directory is full", box.StoreError, StringComparison.Ordinal);
        var health = box.Health();
        Assert.True(health.DiskFull);
        Assert.Equal(50, health.DroppedDiskFull["telemetry"]);
        Assert.Equal(50, health.Dropped["telemetry"]);
        Assert.Equal(stored, box.Stats().Depth[RecordClass.Telemetry]);

        // Space comes back: the next write after the reopen delay stores again, with nothing lost of what was stored.
        fs.Free();
        time.Advance(DeviceOutbox.ReopenAfter);
        var before = box.StoreError;
        Assert.True(box.Append(RecordClass.Alert, Encoding.UTF8.GetBytes("{\"kind\":\"after\"}")) > 0, $"{before} / {box.StoreError}");
        Assert.False(box.DiskFull);
        Assert.Null(box.StoreError);
        Assert.Equal(stored, box.Stats().Depth[RecordClass.Telemetry]);
        Assert.Equal(stored + 1, box.Peek(100_000).Count);

        // The counts were written with the next commit: they survive a restart.
        box.Dispose();
        using var again = new DeviceOutbox(path, new OutboxSettings(), time);
        Assert.Equal(50, again.Health().DroppedDiskFull["telemetry"]);
        Assert.Equal(stored + 1, again.Peek(100_000).Count);
    }

    [SkippableFact]
    public void A_full_disk_drops_whole_result_log_lines_counts_them_in_health_and_the_log_resumes_when_space_comes_back()
    {
        using var fs = SmallFileSystem.TryMount(256, out var whyNot);
        Skip.If(fs is null, whyNot);
        var health = new AgentHealth(TimeProvider.System);
        var manifest = TestPackages.Manifest("x", [1, 2], ["a", "b"], 1, "y", [1, 2]);
        var path = Path.Combine(fs!.Path, "results.jsonl");
        using var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read, bufferSize: 0);
        using var log = new ResultLog(stream, ownsStream: false, "m", "1", health);
        var p = new Prediction(manifest);
        fs.Fill(leaveBytes: 8 * 1024);

        var i = 0;
        while (log.DroppedDiskFull < 20 && i < 10_000) { p.Sequence = ++i; log.OnPrediction(p); }

        Assert.Equal(20, log.DroppedDiskFull);
        var sink = Assert.Single(health.Snapshot().Sinks);
        Assert.True(sink.DiskFull);
        Assert.Equal(20, sink.DroppedDiskFull);
        Assert.Equal(0, sink.Errors); // a full disk is not a failing sink: it never stops the agent

        fs.Free();
        p.Sequence = ++i;
        log.OnPrediction(p);
        Assert.False(health.Snapshot().Sinks[0].DiskFull);

        // Every line in the file is whole JSON: the ones that did not fit were cut off again.
        var lines = File.ReadAllLines(path);
        Assert.All(lines, l => System.Text.Json.JsonDocument.Parse(l).Dispose());
        Assert.Equal(i - 20, lines.Length);
        Assert.Contains($"\"seq\":{i}", lines[^1], StringComparison.Ordinal);
    }

    [SkippableFact]
    public void The_agent_on_a_full_data_directory_keeps_predicting_and_exits_cleanly_and_status_says_the_disk_is_full()
    {
        using var fs = SmallFileSystem.TryMount(3072, out var whyNot);
        Skip.If(fs is null, whyNot);
        fs!.Fill(leaveBytes: 300 * 1024);
        string[] run = ["run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", "500", "--fast", "--quiet", "--data", fs.Path];

        var (code, stdout, stderr) = Cli.AgentProcess.Agent(run);
        Assert.True(code == 0, stderr);
        Assert.Equal(500, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length); // every prediction, stored or not
        Assert.Contains("data directory is full", stderr, StringComparison.Ordinal);
        var (sc, status, serr) = Cli.AgentProcess.Agent("status", "--data", fs.Path);
        Assert.True(sc == 0, serr);
        Assert.Contains("DISK FULL", status, StringComparison.Ordinal);

        // Space comes back: the next run stores again, and status no longer says full.
        fs.Free();
        var again = Cli.AgentProcess.Agent([.. run[..6], "20", .. run[7..]]);
        Assert.True(again.ExitCode == 0, again.Stderr);
        (_, status, _) = Cli.AgentProcess.Agent("status", "--data", fs.Path);
        Assert.DoesNotContain("DISK FULL", status, StringComparison.Ordinal);
        Assert.Matches(@"telemetry\s+\d+\s", status);
    }
}
