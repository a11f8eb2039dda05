using System.Text.Json;
using EdgeMl.FleetSim;
using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.FleetHub.Tests;

/// <summary>What reaches the hub across a network cut between a device and its hub.</summary>
public sealed class HubOutageTests : IDisposable
{
    private readonly HubHarness _h = new();

    [Fact]
    public void With_the_uplink_cut_and_a_tiny_budget_telemetry_is_dropped_before_alerts_and_the_drop_counts_reach_the_hub()
    {
        _h.StartHub();
        _h.Enroll("pump-1");
        using var cable = new TcpCutProxy(_h.Mqtt, startCut: true);
        // Real time (about 8 predictions/s), a bearing fault after 1 s that an alert-only rule reports,
        // and an outbox of 8 KiB: a few seconds of telemetry fill it.
        using var agent = _h.Start(HubHarness.AgentDll,
        [
            "run", "--model", EdgeMl.TestUtilities.TestPackages.VibrationInt8, "--sensor", "sim:vibration,fault=bearing,fault-at=1", "--quiet",
            "--data", _h.AgentData("pump-1"), "--hub", $"mqtt://127.0.0.1:{cable.Port}", "--health-every", "2",
            "--Agent:Pipeline:Realtime=true", "--Agent:Outbox:MaxBytes=8192",
            "--Agent:Actions:0:Label=bearing_fault", "--Agent:Actions:0:After=2",
            "--Agent:Hub:ReconnectMinMs=100", "--Agent:Hub:ReconnectMaxMs=500",
        ], _ => { });
        Thread.Sleep(9000); // ~70 predictions produced while nothing can leave
        Assert.Equal(0, _h.Records("pump-1"));

        cable.Restore();
        HubHarness.Until(() => Dropped(_h.Device("pump-1"), "telemetry") > 0, "a health report with the telemetry drops", 30_000);
        var alerts = _h.Get("/api/devices/pump-1/alerts").EnumerateArray().Select(r => r.GetProperty("data")).ToList();
        var on = Assert.Single(alerts, a => a.GetProperty("kind").GetString() == "rule" && a.GetProperty("state").GetString() == "on");
        Assert.Equal("bearing_fault", on.GetProperty("label").GetString());
        Assert.Equal(0, Dropped(_h.Device("pump-1"), "alert"));

        // What was kept arrived once each; what was dropped was counted, not silently lost.
        var seqs = _h.Stored("pump-1").Select(r => r.Seq).ToList();
        Assert.Equal(seqs.Count, seqs.Distinct().Count());
        var produced = _h.Device("pump-1").GetProperty("health").GetProperty("model").GetProperty("predictions").GetInt64();
        Assert.True(seqs.Count < produced, $"{seqs.Count} stored of {produced} produced: some must have been dropped");
        agent.Kill();
        agent.WaitForExit();
    }

    [Fact]
    public void A_network_cut_of_twenty_seconds_flips_presence_and_loses_and_duplicates_nothing()
    {
        _h.StartHub();
        _h.Enroll("belt-1");
        using var cable = new TcpCutProxy(_h.Mqtt);
        using var agent = _h.Start(HubHarness.AgentDll,
        [
            "run", "--model", EdgeMl.TestUtilities.TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", "260", "--quiet",
            "--data", _h.AgentData("belt-1"), "--hub", $"mqtt://127.0.0.1:{cable.Port}", "--Agent:Pipeline:Realtime=true",
            "--Agent:Hub:ReconnectMinMs=100", "--Agent:Hub:ReconnectMaxMs=2000",
            // Small batches and a backfill rate: after the cut, live records of this boot go before its backlog.
            "--Agent:Hub:BatchSize=10", "--Agent:Hub:BackfillRecordsPerSecond=40",
        ], _ => { }); // about 33 s of predictions in real time
        HubHarness.Until(() => _h.Records("belt-1") >= 8, "the first records stored");
        var boot = _h.Device("belt-1").GetProperty("boot").GetString();

        cable.Cut();
        HubHarness.Until(() => _h.Device("belt-1").GetProperty("presence").GetString() == "offline", "presence offline through the Last Will");
        var beforeRestore = _h.Records("belt-1");
        Thread.Sleep(20_000);
        Assert.Equal(beforeRestore, _h.Records("belt-1"));

        cable.Restore();
        HubHarness.Until(() => _h.Device("belt-1").GetProperty("presence").GetString() == "online", "presence online again", 20_000);
        Assert.Equal(boot, _h.Device("belt-1").GetProperty("boot").GetString()); // the same run, reconnected
        Assert.True(agent.WaitForExit(60_000));
        HubHarness.Until(() => _h.Records("belt-1") >= 260, "the backlog drained");
        Assert.Equal(Enumerable.Range(1, 260).Select(i => (long)i), _h.Stored("belt-1").Select(r => r.Seq).Order());
    }

    [Fact]
    public void An_external_broker_restart_loses_and_duplicates_nothing()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        var persist = Path.Combine(_h.Dir.Path, "mosquitto");
        Directory.CreateDirectory(persist);
        using var broker = new Mosquitto(persistDirectory: persist).Start();
        _h.StartHub(broker.Url);
        Assert.True(_h.WaitSubscribed(30_000), "the hub did not subscribe at the external broker");
        using var agent = _h.Agent("ext-mill", 80, fast: false); // about 10 s in real time
        HubHarness.Until(() => _h.Records("ext-mill") >= 8, "the first records stored");

        broker.StopGracefully(); // as `systemctl restart mosquitto` does
        Thread.Sleep(2000);
        broker.Start();
        Assert.True(agent.WaitForExit(60_000));
        HubHarness.Until(() => _h.Records("ext-mill") >= 80, $"all 80 records (have: {string.Join(",", _h.Stored("ext-mill").Select(r => r.Seq).Order())})", 40_000);
        Assert.Equal(Enumerable.Range(1, 80).Select(i => (long)i), _h.Stored("ext-mill").Select(r => r.Seq).Order());
    }

    private static long Dropped(JsonElement device, string recordClass) =>
        device.TryGetProperty("health", out var h) && h.ValueKind == JsonValueKind.Object
        && h.GetProperty("outbox").GetProperty("dropped").TryGetProperty(recordClass, out var n) ? n.GetInt64() : 0;

    public void Dispose() => _h.Dispose();
}
