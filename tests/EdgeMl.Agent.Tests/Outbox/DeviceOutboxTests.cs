using System.Diagnostics;
using System.Text;
using EdgeMl.Agent.Outbox;
using EdgeMl.Protocol.Wire;
using EdgeMl.TestUtilities;
using Microsoft.Extensions.Time.Testing;

namespace EdgeMl.Agent.Tests.Outbox;

/// <summary>The device outbox on real LiteDB files.</summary>
public class DeviceOutboxTests
{
    private static byte[] Bytes(string s, int size = 0) => Encoding.UTF8.GetBytes(size == 0 ? s : s.PadRight(size, '.'));

    [Fact]
    public void Records_come_out_most_important_class_first_then_oldest_first_and_leave_when_acknowledged()
    {
        using var dir = new TempDirectory();
        using var box = new DeviceOutbox(dir.File("agent.db"), new OutboxSettings());
        box.Append(RecordClass.Telemetry, Bytes("t1"));
        box.Append(RecordClass.Health, Bytes("h1"));
        box.Append(RecordClass.Telemetry, Bytes("t2"));
        box.Append(RecordClass.Alert, Bytes("a1"));

        var batch = box.Peek(10);
        Assert.Equal(["a1", "h1", "t1", "t2"], batch.Select(r => Encoding.UTF8.GetString(r.Payload)));
        Assert.Equal([4L, 2, 1, 3], batch.Select(r => r.Seq));
        Assert.All(batch, r => Assert.Equal(box.BootId, r.BootId));

        box.Acknowledge(batch.Take(2).Select(r => r.Id));
        Assert.Equal(["t1", "t2"], box.Peek(10).Select(r => Encoding.UTF8.GetString(r.Payload)));
        Assert.Equal(2, box.Stats().Depth[RecordClass.Telemetry]);
        Assert.Equal(0, box.Stats().Depth[RecordClass.Alert]);
    }

    [Fact]
    public void Unacknowledged_records_and_drop_counts_survive_a_restart_under_a_new_boot()
    {
        using var dir = new TempDirectory();
        var path = dir.File("agent.db");
        string firstBoot;
        using (var box = new DeviceOutbox(path, new OutboxSettings { MaxBytes = 2048 }))
        {
            firstBoot = box.BootId;
            box.Append(RecordClass.Telemetry, Bytes("x", 1500));
            box.Append(RecordClass.Telemetry, Bytes("y", 1000)); // evicts x
            box.Append(RecordClass.Alert, Bytes("a"));
        }

        using var reopened = new DeviceOutbox(path, new OutboxSettings { MaxBytes = 2048 });
        Assert.NotEqual(firstBoot, reopened.BootId);
        var waiting = reopened.Peek(10);
        Assert.Equal([(firstBoot, 3L), (firstBoot, 2L)], waiting.Select(r => (r.BootId, r.Seq)));
        Assert.Equal(1, reopened.Stats().Dropped[RecordClass.Telemetry]);
        Assert.Equal(1001, reopened.Stats().Bytes);
        Assert.Equal(1, reopened.Append(RecordClass.Health, Bytes("h"))); // this boot numbers from 1
    }

    [Fact]
    public void When_full_telemetry_is_dropped_before_alerts_and_drops_are_counted_per_class()
    {
        using var dir = new TempDirectory();
        using var box = new DeviceOutbox(dir.File("agent.db"), new OutboxSettings { MaxBytes = 4000 });
        for (var i = 0; i < 3; i++) box.Append(RecordClass.Alert, Bytes($"alert{i}", 1000));
        box.Append(RecordClass.Telemetry, Bytes("tele0", 900));

        // Another alert does not fit: the telemetry record goes, the alerts stay.
        Assert.NotEqual(0, box.Append(RecordClass.Alert, Bytes("alert3", 1000)));
        // Telemetry cannot push out alerts: it is dropped itself.
        Assert.Equal(0, box.Append(RecordClass.Telemetry, Bytes("tele1", 100)));

        var stats = box.Stats();
        Assert.Equal(4, stats.Depth[RecordClass.Alert]);
        Assert.Equal(0, stats.Depth[RecordClass.Telemetry]);
        Assert.Equal(2, stats.Dropped[RecordClass.Telemetry]);
        Assert.Equal(0, stats.Dropped[RecordClass.Alert]);
        Assert.True(stats.Bytes <= 4000);
    }

    [Fact]
    public void Records_past_their_ttl_expire_and_are_counted()
    {
        using var dir = new TempDirectory();
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-11-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        using var box = new DeviceOutbox(dir.File("agent.db"), new OutboxSettings { TtlHours = 24 }, time);
        box.Append(RecordClass.Telemetry, Bytes("old"));
        time.Advance(TimeSpan.FromHours(20));
        box.Append(RecordClass.Health, Bytes("newer"));
        time.Advance(TimeSpan.FromHours(5));

        Assert.Equal(1, box.Expire());
        Assert.Equal(["newer"], box.Peek(10).Select(r => Encoding.UTF8.GetString(r.Payload)));
        Assert.Equal(1, box.Stats().Expired[RecordClass.Telemetry]);
    }
}

public class OutboxClockTests
{
    /// <summary>A clock whose wall time can jump while its monotonic time runs on (a Pi without RTC, then NTP).</summary>
    private sealed class JumpingClock(DateTimeOffset start) : TimeProvider
    {
        private long _monotonicTicks;

        public TimeSpan Jump { get; set; }

        public override DateTimeOffset GetUtcNow() => start + TimeSpan.FromTicks(_monotonicTicks) + Jump;

        public override long GetTimestamp() => _monotonicTicks;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public void Advance(TimeSpan by) => _monotonicTicks += by.Ticks;
    }

    [Fact]
    public void A_wall_clock_jump_of_days_does_not_expire_a_backlog_stored_by_this_run_but_real_age_still_does()
    {
        using var dir = new TempDirectory();
        var clock = new JumpingClock(DateTimeOffset.Parse("2020-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture)); // booted in the past
        using var box = new DeviceOutbox(dir.File("agent.db"), new OutboxSettings { TtlHours = 24 }, clock);
        for (var i = 0; i < 50; i++) box.Append(RecordClass.Telemetry, Encoding.UTF8.GetBytes($"{{\"i\":{i}}}"));
        clock.Advance(TimeSpan.FromHours(1));
        clock.Jump = TimeSpan.FromDays(2500); // NTP sets the real date

        Assert.Equal(0, box.Expire());
        Assert.Equal(50, box.Stats().Depth[RecordClass.Telemetry]);

        clock.Advance(TimeSpan.FromHours(24)); // now they really are older than the TTL
        Assert.Equal(50, box.Expire());
        Assert.Equal(50, box.Stats().Expired[RecordClass.Telemetry]);
    }
}

public class OutboxCrashTests
{
    [Fact]
    public void Kill_9_loses_no_prediction_that_was_printed_because_it_was_stored_first()
    {
        using var dir = new TempDirectory();
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "edgeml-agent.dll"), "run", "--model", TestPackages.VibrationInt8,
                     "--sensor", "sim:vibration", "--fast", "--quiet", "--data", dir.Path })
        {
            psi.ArgumentList.Add(a);
        }

        var printed = 0;
        using (var p = Process.Start(psi)!)
        {
            while (printed < 60 && p.StandardOutput.ReadLine() is not null) printed++;
            p.Kill(); // SIGKILL: no shutdown, no flush, no dispose
            p.WaitForExit();
        }

        Assert.Equal(60, printed);
        using var box = new DeviceOutbox(Hosting.AgentRuntime.DeviceOutboxPath(dir.Path), new OutboxSettings());
        var stored = box.Peek(100_000).Where(r => r.Class == RecordClass.Telemetry).ToList();
        Assert.True(stored.Count >= printed, $"{stored.Count} stored < {printed} printed");
        Assert.Equal(Enumerable.Range(1, stored.Count).Select(i => (long)i), stored.Select(r => r.Seq)); // no gaps
        Assert.Single(stored.Select(r => r.BootId).Distinct());
    }

    [Fact]
    public void Status_reads_the_outbox_and_last_health_without_a_network()
    {
        using var dir = new TempDirectory();
        var (code, _, stderr) = Cli.AgentProcess.Agent("run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration",
            "--count", "12", "--quiet", "--data", dir.Path, "--health-every", "1");
        Assert.True(code == 0, stderr);

        var (sc, stdout, serr) = Cli.AgentProcess.Agent("status", "--data", dir.Path);
        Assert.True(sc == 0, serr);
        Assert.Matches(@"telemetry\s+12\s+0\s+0", stdout);
        Assert.Contains("model      vibration-fault@1.0.0 on cpu", stdout, StringComparison.Ordinal);
        Assert.Contains("sensor     sim:vibration: ok", stdout, StringComparison.Ordinal);
        var fileBytes = new FileInfo(Path.Combine(dir.Path, "agent.db")).Length;
        Assert.Matches(@"file \d+\.\d kB on disk \(.*agent\.db and its log\)", stdout); // a fresh outbox: tens of kB

        var (jc, json, _) = Cli.AgentProcess.Agent("status", "--data", dir.Path, "--json");
        Assert.Equal(0, jc);
        var root = System.Text.Json.JsonDocument.Parse(json).RootElement;
        Assert.Equal(12, root.GetProperty("outbox").GetProperty("depth").GetProperty("telemetry").GetInt64());
        Assert.True(root.GetProperty("outbox").GetProperty("fileBytes").GetInt64() >= fileBytes);
    }
}
