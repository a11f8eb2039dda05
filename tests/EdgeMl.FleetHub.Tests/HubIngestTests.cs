using System.Diagnostics;
using System.Text.Json;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.FleetHub.Tests;

/// <summary>The hub with its embedded broker and real agents, each a separate process, over loopback MQTT.</summary>
public sealed class HubIngestTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly int _mqtt = Mosquitto.FreePort();
    private readonly int _http = Mosquitto.FreePort();
    private readonly HttpClient _api = new();
    private Process? _hub;

    public HubIngestTests() => _api.BaseAddress = new Uri($"http://127.0.0.1:{_http}");

    private string _agentBroker = "";
    private readonly ManualResetEventSlim _subscribed = new();

    private void StartHub(string? externalBroker = null)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll"), "--Data", Path.Combine(_dir.Path, "hub"),
                     "--MqttPort", _mqtt.ToString(System.Globalization.CultureInfo.InvariantCulture), "--urls", $"http://127.0.0.1:{_http}" })
        {
            psi.ArgumentList.Add(a);
        }

        if (externalBroker is not null)
        {
            psi.ArgumentList.Add("--Broker");
            psi.ArgumentList.Add(externalBroker);
        }

        _agentBroker = externalBroker ?? $"mqtt://127.0.0.1:{_mqtt}";
        _hub = Process.Start(psi)!;
        _subscribed.Reset();
        _hub.OutputDataReceived += (_, e) =>
        {
            // Logged after the hub subscribed at the external broker.
            if (e.Data?.Contains("Connected to external broker", StringComparison.Ordinal) == true) _subscribed.Set();
        };
        _hub.ErrorDataReceived += (_, _) => { };
        _hub.BeginOutputReadLine();
        _hub.BeginErrorReadLine();
        Until(() => { try { return _api.GetAsync("/api/devices").Result.IsSuccessStatusCode; } catch (AggregateException) { return false; } }, "the hub to answer");
    }

    private void KillHub()
    {
        _hub!.Kill(); // kill -9
        _hub.WaitForExit();
        _hub.Dispose();
        _hub = null;
    }

    private static void Until(Func<bool> condition, string what, int timeoutMs = 30_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline) Assert.Fail($"timed out waiting for {what}");
            Thread.Sleep(50);
        }
    }

    private Process Agent(string device, int count, bool fast)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "edgeml-agent.dll"), "run", "--model", TestPackages.VibrationInt8,
                     "--sensor", "sim:vibration", "--count", count.ToString(System.Globalization.CultureInfo.InvariantCulture), "--quiet",
                     "--data", Path.Combine(_dir.Path, device), "--hub", _agentBroker, "--device", device,
                     "--Agent:Hub:ReconnectMinMs=50", "--Agent:Hub:ReconnectMaxMs=500", fast ? "--fast" : "--Agent:Pipeline:Realtime=true" })
        {
            psi.ArgumentList.Add(a);
        }

        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    private long Records(string id)
    {
        var response = _api.GetAsync($"/api/devices/{id}").Result;
        return response.IsSuccessStatusCode ? JsonDocument.Parse(response.Content.ReadAsStringAsync().Result).RootElement.GetProperty("records").GetInt64() : 0;
    }

    private long Malformed() => JsonDocument.Parse(_api.GetStringAsync("/api/ingest").Result).RootElement.GetProperty("malformed").GetInt64();

    private JsonElement Device(string id) => JsonDocument.Parse(_api.GetStringAsync($"/api/devices/{id}").Result).RootElement;

    private List<(string Boot, long Seq)> Stored(string id) =>
        JsonDocument.Parse(_api.GetStringAsync($"/api/devices/{id}/telemetry?limit=10000").Result).RootElement.EnumerateArray()
            .Where(r => r.GetProperty("class").GetString() == "telemetry")
            .Select(r => (r.GetProperty("boot").GetString()!, r.GetProperty("seq").GetInt64())).ToList();

    [Fact]
    public void Records_produced_by_several_agents_are_stored_once_each()
    {
        StartHub();
        var agents = new[] { "press-1", "press-2", "press-3" }.Select(d => (d, Agent(d, 60, fast: true))).ToList();
        foreach (var (_, p) in agents)
        {
            Assert.True(p.WaitForExit(60_000));
            Assert.Equal(0, p.ExitCode);
            p.Dispose();
        }

        foreach (var (id, _) in agents)
        {
            var stored = Stored(id);
            Assert.Equal(60, stored.Count);
            Assert.Equal(Enumerable.Range(1, 60).Select(i => (long)i), stored.Select(r => r.Seq).Order());
            Assert.Equal(60, Device(id).GetProperty("records").GetInt64());
            Assert.Equal("offline", Device(id).GetProperty("presence").GetString()); // the agent said goodbye
        }
    }

    [Fact]
    public void With_an_external_mosquitto_broker_the_hub_stores_every_record_once()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new Mosquitto().Start();
        StartHub(broker.Url);
        Assert.True(_subscribed.Wait(30_000), "the hub did not subscribe at the external broker");
        var agents = new[] { "ext-1", "ext-2" }.Select(d => (d, Agent(d, 50, fast: true))).ToList();
        foreach (var (_, p) in agents)
        {
            Assert.True(p.WaitForExit(60_000));
            p.Dispose();
        }

        foreach (var (id, _) in agents)
        {
            Until(() => Records(id) >= 50, $"{id}'s records");
            Assert.Equal(Enumerable.Range(1, 50).Select(i => (long)i), Stored(id).Select(r => r.Seq).Order());
        }
    }

    [Fact]
    public void Presence_flips_to_offline_through_the_last_will_when_an_agent_is_killed_and_back_on_restart()
    {
        StartHub();
        using (var agent = Agent("lathe-1", 0, fast: false))
        {
            Until(() => Records("lathe-1") >= 2, "records from the running agent");
            Assert.Equal("online", Device("lathe-1").GetProperty("presence").GetString());
            agent.Kill(); // kill -9: the agent says nothing, its broker session's Last Will does
            agent.WaitForExit();
        }

        Until(() => Device("lathe-1").GetProperty("presence").GetString() == "offline", "presence offline via the Last Will");
        var killedBoot = Device("lathe-1").GetProperty("boot").GetString();

        using var again = Agent("lathe-1", 0, fast: false);
        Until(() => Device("lathe-1").GetProperty("presence").GetString() == "online" && Device("lathe-1").GetProperty("boot").GetString() != killedBoot,
            "presence online again with a new boot id");
        again.Kill();
        again.WaitForExit();
    }

    [Fact]
    public void A_hub_killed_and_restarted_mid_stream_loses_and_duplicates_nothing()
    {
        StartHub();
        using var agent = Agent("mill-1", 40, fast: false); // real time: about 5 s
        Until(() => Records("mill-1") >= 8, "the first records stored", 30_000);
        Assert.Equal("online", Device("mill-1").GetProperty("presence").GetString());
        KillHub();
        Thread.Sleep(1500); // the agent keeps measuring with no hub
        StartHub();
        Assert.True(agent.WaitForExit(60_000));

        Until(() => Stored("mill-1").Count >= 40, "all 40 records");
        var stored = Stored("mill-1");
        Assert.Equal(40, stored.Count);
        Assert.Equal(Enumerable.Range(1, 40).Select(i => (long)i), stored.Select(r => r.Seq).Order());
    }

    [Fact]
    public void A_malformed_payload_is_counted_and_dropped_without_affecting_other_devices()
    {
        Assert.True(File.Exists("/usr/bin/mosquitto_pub"), "mosquitto-clients is needed (./build.sh test installs it)");
        StartHub();
        var port = _mqtt.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var (topic, payload) in new[]
                 {
                     ("edgeml/rogue-1/tele", "{not json"),
                     ("edgeml/rogue-1/tele", "{\"device\":\"press-9\",\"records\":[]}"), // claims another device
                     ("edgeml/rogue-1/status", "[]"),
                 })
        {
            using var pub = Process.Start(new ProcessStartInfo("/usr/bin/mosquitto_pub", ["-p", port, "-i", "rogue-1", "-t", topic, "-m", payload, "-q", "1"]) { UseShellExecute = false })!;
            Assert.True(pub.WaitForExit(10_000));
            Assert.Equal(0, pub.ExitCode); // acknowledged: re-sending garbage would not help
        }

        using var agent = Agent("press-9", 20, fast: true);
        Assert.True(agent.WaitForExit(60_000));
        Assert.Equal(20, Stored("press-9").Count);
        Assert.Equal(3, Malformed());
    }

    public void Dispose()
    {
        if (_hub is not null) KillHub();
        _api.Dispose();
        _subscribed.Dispose();
        _dir.Dispose();
    }
}
