using System.Diagnostics;
using System.Text.Json;
using EdgeMl.TestUtilities;
using EdgeMl.FleetSim;
using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.Agent.Tests.Sync;

/// <summary>
/// The agent's uplink against Debian's mosquitto on loopback, observed by mosquitto_sub as a third-party
/// client; network cuts come from a TCP relay between the agent and the broker.
/// </summary>
public sealed class UplinkTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly Mosquitto _broker;
    private readonly MosquittoSub _sub;

    public UplinkTests()
    {
        Skip.IfNot(Mosquitto.Available, "mosquitto is not installed (./build.sh test installs it)");
        _broker = new Mosquitto().Start();
        _sub = new MosquittoSub(_broker.Port, "edgeml/#", "observer-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            // The observer is live once it sees its own probe (published until it does: it may still be subscribing).
            var port = _broker.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
            for (var i = 0; i < 100 && !_sub.Messages.Any(x => x.Topic == "edgeml/probe"); i++)
            {
                Cli.AgentProcess.Exec("/usr/bin/mosquitto_pub", null, ["-p", port, "-t", "edgeml/probe", "-m", "x", "-q", "1"]);
                Thread.Sleep(50);
            }

            _sub.WaitUntil(m => m.Any(x => x.Topic == "edgeml/probe"), "the observer to receive its probe");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private static List<(string Boot, long Seq)> Telemetry(List<(string Topic, string Payload)> messages, string device) =>
        messages.Where(m => m.Topic == $"edgeml/{device}/tele")
            .SelectMany(m => JsonDocument.Parse(m.Payload).RootElement.GetProperty("records").EnumerateArray())
            .Where(r => r.GetProperty("class").GetString() == "telemetry")
            .Select(r => (r.GetProperty("boot").GetString()!, r.GetProperty("seq").GetInt64()))
            .ToList();

    private sealed class Agent : IDisposable
    {
        public readonly Process Process;
        private int _lines;

        public Agent(params string[] args)
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "edgeml-agent.dll"));
            foreach (var a in args) psi.ArgumentList.Add(a);
            Process = Process.Start(psi)!;
            Process.OutputDataReceived += (_, e) => { if (e.Data is { Length: > 0 }) Interlocked.Increment(ref _lines); };
            Process.ErrorDataReceived += (_, _) => { };
            Process.BeginOutputReadLine();
            Process.BeginErrorReadLine();
        }

        public int Lines => Volatile.Read(ref _lines);

        public void WaitForLines(int n)
        {
            var deadline = Environment.TickCount64 + 30_000;
            while (Lines < n)
            {
                if (Process.HasExited && Lines < n) Assert.Fail($"agent exited ({Process.ExitCode}) after {Lines} predictions");
                if (Environment.TickCount64 > deadline) Assert.Fail($"agent printed {Lines} of {n} predictions");
                Thread.Sleep(10);
            }
        }

        public void Dispose()
        {
            if (!Process.HasExited) Process.Kill();
            Process.WaitForExit();
            Process.Dispose();
        }
    }

    private string[] AgentArgs(string hub, string device, string count, bool fast) =>
    [
        "run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", count, "--quiet",
        "--data", _dir.Path, "--hub", hub, "--device", device,
        "--Agent:Hub:ReconnectMinMs=50", "--Agent:Hub:ReconnectMaxMs=300", .. (fast ? new[] { "--fast" } : []),
    ];

    [SkippableFact]
    public void A_backlog_stored_while_the_network_was_down_is_delivered_complete_when_it_returns()
    {
        using var link = new TcpCutProxy(_broker.Port, startCut: true);
        using var agent = new Agent(AgentArgs(link.Url, "pump-1", "150", fast: true));
        agent.WaitForLines(150); // every prediction made and stored; none could be sent
        Assert.Empty(Telemetry(_sub.Messages, "pump-1"));

        link.Restore();
        _sub.WaitUntil(m => Telemetry(m, "pump-1").Count >= 150, "150 records at the observer");
        Assert.True(agent.Process.WaitForExit(20_000));
        Assert.Equal(0, agent.Process.ExitCode);

        var got = Telemetry(_sub.Messages, "pump-1");
        Assert.Equal(Enumerable.Range(1, 150).Select(i => (long)i), got.Select(r => r.Seq).Order());
        Assert.Single(got.Select(r => r.Boot).Distinct());
        var (_, status, _) = Cli.AgentProcess.Agent("status", "--data", _dir.Path);
        Assert.Contains("outbox     0 records waiting", status, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void A_network_cut_mid_stream_loses_nothing()
    {
        using var link = new TcpCutProxy(_broker.Port);
        using var agent = new Agent(AgentArgs(link.Url, "pump-2", "40", fast: false)); // real time: ~5 s
        _sub.WaitUntil(m => Telemetry(m, "pump-2").Count >= 8, "the first records");
        link.Cut();
        var atCut = agent.Lines;
        agent.WaitForLines(atCut + 10); // the agent keeps measuring while cut off
        link.Restore();
        Assert.True(agent.Process.WaitForExit(30_000));

        _sub.WaitUntil(m => Telemetry(m, "pump-2").Select(r => r.Seq).Distinct().Count() >= 40, "all 40 records");
        var seqs = Telemetry(_sub.Messages, "pump-2").Select(r => r.Seq).Distinct().Order();
        Assert.Equal(Enumerable.Range(1, 40).Select(i => (long)i), seqs);
        Assert.True(link.Connections >= 2, "the agent reconnected after the cut");
    }

    [SkippableFact]
    public void Kill_9_leaves_the_last_will_offline_and_the_restarted_agent_sends_what_the_killed_one_stored()
    {
        using var link = new TcpCutProxy(_broker.Port);
        string firstBoot;
        int killedPrinted;
        using (var agent = new Agent(AgentArgs(link.Url, "pump-3", "0", fast: false)))
        {
            _sub.WaitUntil(m => m.Any(x => x.Topic == "edgeml/pump-3/status" && x.Payload.Contains("\"online\"", StringComparison.Ordinal)), "online status");
            firstBoot = JsonDocument.Parse(_sub.Messages.Last(x => x.Topic == "edgeml/pump-3/status").Payload).RootElement.GetProperty("boot").GetString()!;
            link.Cut(); // what it measures from now on stays in its outbox
            var before = agent.Lines;
            agent.WaitForLines(before + 5);
            link.Restore();
            agent.Process.Kill(); // kill -9, possibly before it could reconnect
            killedPrinted = agent.Lines;
            agent.Process.WaitForExit();
        }

        using (var second = new Agent(AgentArgs(link.Url, "pump-3", "5", fast: true)))
        {
            Assert.True(second.Process.WaitForExit(30_000));
        }

        _sub.WaitUntil(m => m.Any(x => x.Topic == "edgeml/pump-3/status" && x.Payload.Contains("\"offline\"", StringComparison.Ordinal) && x.Payload.Contains(firstBoot, StringComparison.Ordinal)),
            "the first boot's Last Will");
        var records = Telemetry(_sub.Messages, "pump-3");
        var first = records.Where(r => r.Boot == firstBoot).Select(r => r.Seq).Distinct().Order().ToList();
        Assert.Equal(Enumerable.Range(1, first.Count).Select(i => (long)i), first); // no gap in the killed boot
        Assert.True(first.Count >= killedPrinted, $"{first.Count} delivered < {killedPrinted} printed (and so stored) before the kill");
        Assert.Equal(5, records.Count(r => r.Boot != firstBoot));
    }

    [SkippableFact]
    public void Backfill_after_an_outage_keeps_to_its_rate_while_live_records_go_at_once()
    {
        using var link = new TcpCutProxy(_broker.Port, startCut: true);
        string backlogBoot;
        using (var down = new Agent(AgentArgs(link.Url, "pump-4", "160", fast: true)))
        {
            down.WaitForLines(160); // a backlog of 160 while the link is down
            down.Process.Kill();
            down.Process.WaitForExit();
        }

        link.Restore();
        var started = Environment.TickCount64;
        using var agent = new Agent([.. AgentArgs(link.Url, "pump-4", "0", fast: false), "--Agent:Hub:BackfillRecordsPerSecond=30", "--Agent:Hub:BatchSize=10"]);
        _sub.WaitUntil(m => Telemetry(m, "pump-4").Select(r => r.Boot).Distinct().Count() == 2, "records of both boots");
        // The live agent announced its boot in its status; the other boot is the backlog's (that agent never connected).
        _sub.WaitUntil(m => m.Any(x => x.Topic == "edgeml/pump-4/status"), "the live agent's status");
        var liveBoot = JsonDocument.Parse(_sub.Messages.First(x => x.Topic == "edgeml/pump-4/status").Payload).RootElement.GetProperty("boot").GetString();
        backlogBoot = Telemetry(_sub.Messages, "pump-4").First(r => r.Boot != liveBoot).Boot;

        // Live predictions (about 8/s) arrive while the backlog is still trickling in at 30/s.
        _sub.WaitUntil(m => Telemetry(m, "pump-4").Count(r => r.Boot != backlogBoot) >= 16, "16 live records");
        var elapsed = (Environment.TickCount64 - started) / 1000.0;
        var backlogSoFar = Telemetry(_sub.Messages, "pump-4").Count(r => r.Boot == backlogBoot);
        Assert.True(backlogSoFar < 160, $"the whole backlog ({backlogSoFar}) went before 16 live records");
        Assert.True(backlogSoFar <= 30 * elapsed + 10, $"{backlogSoFar} backlog records in {elapsed:0.0} s exceeds 30/s");

        _sub.WaitUntil(m => Telemetry(m, "pump-4").Where(r => r.Boot == backlogBoot).Select(r => r.Seq).Distinct().Count() >= 160, "the whole backlog", 30_000);
        Thread.Sleep(300); // nothing beyond the backlog's 160 may follow
        var drained = (Environment.TickCount64 - started) / 1000.0;
        Assert.True(drained >= 4.0, $"160 records at 30/s took {drained:0.0} s"); // (160 - 10 at once) / 30
        Assert.Equal(Enumerable.Range(1, 160).Select(i => (long)i),
            Telemetry(_sub.Messages, "pump-4").Where(r => r.Boot == backlogBoot).Select(r => r.Seq).Distinct().Order());
    }

    public void Dispose()
    {
        _sub?.Dispose();
        _broker?.Dispose();
        _dir.Dispose();
    }
}
