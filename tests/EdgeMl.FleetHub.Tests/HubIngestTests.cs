using System.Net.Http.Json;
using System.Text.Json;
using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.FleetHub.Tests;

/// <summary>The hub with its embedded broker and real agents, each a separate process, over loopback MQTT.</summary>
public sealed class HubIngestTests : IDisposable
{
    private readonly HubHarness _h = new();

    private long Malformed() => _h.Get("/api/ingest").GetProperty("malformed").GetInt64();

    [Fact]
    public void Records_produced_by_several_agents_are_stored_once_each()
    {
        _h.StartHub();
        var agents = new[] { "press-1", "press-2", "press-3" }.Select(d => (d, _h.Agent(d, 60, fast: true))).ToList();
        foreach (var (_, p) in agents)
        {
            Assert.True(p.WaitForExit(60_000));
            Assert.Equal(0, p.ExitCode);
            p.Dispose();
        }

        foreach (var (id, _) in agents)
        {
            var stored = _h.Stored(id);
            Assert.Equal(60, stored.Count);
            Assert.Equal(Enumerable.Range(1, 60).Select(i => (long)i), stored.Select(r => r.Seq).Order());
            Assert.Equal(61, _h.Device(id).GetProperty("records").GetInt64()); // 60 predictions and the drift monitor's last window
            Assert.Equal(1, _h.Get($"/api/devices/{id}/records?class=drift").GetArrayLength());
            Assert.Equal("offline", _h.Device(id).GetProperty("presence").GetString()); // the agent said goodbye
        }
    }

    [Fact]
    public void With_an_external_mosquitto_broker_the_hub_stores_every_record_once()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new Mosquitto().Start();
        _h.StartHub(broker.Url);
        Assert.True(_h.WaitSubscribed(30_000), "the hub did not subscribe at the external broker");
        var agents = new[] { "ext-1", "ext-2" }.Select(d => (d, _h.Agent(d, 50, fast: true))).ToList();
        foreach (var (_, p) in agents)
        {
            Assert.True(p.WaitForExit(60_000));
            p.Dispose();
        }

        foreach (var (id, _) in agents)
        {
            HubHarness.Until(() => _h.Records(id) >= 50, $"{id}'s records");
            Assert.Equal(Enumerable.Range(1, 50).Select(i => (long)i), _h.Stored(id).Select(r => r.Seq).Order());
        }
    }

    [Fact]
    public async Task The_enroll_answer_names_the_external_broker_and_no_port_of_the_embedded_one()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new Mosquitto().Start();
        _h.StartHub(broker.Url);
        using var raw = new HttpClient { BaseAddress = new Uri(_h.HubUrl) };
        var claim = await raw.PostAsJsonAsync("/api/enroll", new { token = _h.Register("ext-raw") });
        Assert.True(claim.IsSuccessStatusCode, await claim.Content.ReadAsStringAsync());
        var answer = HubHarness.Json(claim);
        Assert.Equal(broker.Url, answer.GetProperty("broker").GetString());
        Assert.False(answer.TryGetProperty("mqttPort", out _), answer.ToString()); // the embedded broker does not listen: no port of it
        Assert.False(answer.TryGetProperty("mqttTlsPort", out _), answer.ToString());

        // The agent that reads the answer keeps the external broker in its identity.
        var (code, _, err) = HubHarness.Run(HubHarness.AgentDll, "enroll", "--hub", $"127.0.0.1:{_h.Http}", "--token", _h.Register("ext-agent"), "--data", _h.AgentData("ext-agent"));
        Assert.True(code == 0, err);
        Assert.Equal(broker.Url, Identity("ext-agent").GetProperty("broker").GetString());

        // The embedded broker: its port, and no broker URL (the device finds it on the hub's host).
        _h.KillHub();
        _h.StartHub();
        (code, _, err) = HubHarness.Run(HubHarness.AgentDll, "enroll", "--hub", $"127.0.0.1:{_h.Http}", "--token", _h.Register("emb-agent"), "--data", _h.AgentData("emb-agent"));
        Assert.True(code == 0, err);
        Assert.Equal($"mqtt://127.0.0.1:{_h.Mqtt}", Identity("emb-agent").GetProperty("broker").GetString());
        claim = await raw.PostAsJsonAsync("/api/enroll", new { token = _h.Register("emb-raw") });
        answer = HubHarness.Json(claim);
        Assert.Equal(_h.Mqtt, answer.GetProperty("mqttPort").GetInt32());
        Assert.True(!answer.TryGetProperty("broker", out var none) || none.ValueKind == JsonValueKind.Null, answer.ToString());
        Assert.False(answer.TryGetProperty("mqttTlsPort", out _), answer.ToString()); // 0: none, left out

        JsonElement Identity(string device) => JsonDocument.Parse(File.ReadAllText(Path.Combine(_h.AgentData(device), "identity.json"))).RootElement.Clone();
    }

    /// <summary>With an external broker: a persistent mosquitto the hub subscribes at (null: the embedded broker).</summary>
    private Mosquitto? StartHub(bool external)
    {
        if (!external)
        {
            _h.StartHub();
            return null;
        }

        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        var persist = Path.Combine(_h.Dir.Path, "mosquitto");
        Directory.CreateDirectory(persist);
        var broker = new Mosquitto(persistDirectory: persist).Start();
        _h.StartHub(broker.Url);
        Assert.True(_h.WaitSubscribed(30_000), "the hub did not subscribe at the external broker");
        return broker;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void An_agent_killed_and_restarted_loses_nothing_and_presence_follows_the_last_will(bool external)
    {
        using var broker = StartHub(external);
        var firstLog = Path.Combine(_h.Dir.Path, "lathe-1.first.jsonl");
        string killedBoot;
        using (var agent = _h.Agent("lathe-1", 0, fast: false, extra: ["--results", firstLog]))
        {
            HubHarness.Until(() => _h.Records("lathe-1") >= 2, "records from the running agent");
            Assert.Equal("online", _h.Device("lathe-1").GetProperty("presence").GetString());
            killedBoot = _h.Device("lathe-1").GetProperty("boot").GetString()!;
            agent.Kill(); // kill -9: the agent says nothing, its broker session's Last Will does
            agent.WaitForExit();
        }

        var printed = File.ReadLines(firstLog).Count(l => l.Length > 0); // each was stored before it was printed
        HubHarness.Until(() => _h.Device("lathe-1").GetProperty("presence").GetString() == "offline", "presence offline via the Last Will");

        using (var again = _h.Agent("lathe-1", 5, fast: true))
        {
            HubHarness.Until(() => _h.Device("lathe-1").GetProperty("boot").GetString() != killedBoot, "the restarted agent with a new boot id");
            Assert.True(again.WaitForExit(60_000));
        }

        // The restarted agent sent what the killed one had stored: the killed boot's records have no gap and
        // cover every prediction it printed; none is stored twice.
        HubHarness.Until(() => _h.Stored("lathe-1").Count(r => r.Boot == killedBoot) >= printed, $"the killed boot's {printed} records");
        var stored = _h.Stored("lathe-1");
        var killed = stored.Where(r => r.Boot == killedBoot).Select(r => r.Seq).Order().ToList();
        Assert.Equal(Enumerable.Range(1, killed.Count).Select(i => (long)i), killed);
        Assert.Equal(5, stored.Count(r => r.Boot != killedBoot));
        Assert.Equal(stored.Count, stored.Distinct().Count());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_hub_killed_and_restarted_mid_stream_loses_and_duplicates_nothing(bool external)
    {
        using var broker = StartHub(external);
        using var agent = _h.Agent("mill-1", 40, fast: false); // real time: about 5 s
        HubHarness.Until(() => _h.Records("mill-1") >= 8, "the first records stored", 30_000);
        Assert.Equal("online", _h.Device("mill-1").GetProperty("presence").GetString());
        _h.KillHub();
        Thread.Sleep(1500); // the agent keeps measuring with no hub
        _h.StartHub(external ? broker!.Url : null);
        Assert.True(agent.WaitForExit(60_000));

        HubHarness.Until(() => _h.Stored("mill-1").Count >= 40, "all 40 records");
        var stored = _h.Stored("mill-1");
        Assert.Equal(40, stored.Count);
        Assert.Equal(Enumerable.Range(1, 40).Select(i => (long)i), stored.Select(r => r.Seq).Order());
    }

    [Fact]
    public void A_malformed_payload_is_counted_and_dropped_without_affecting_other_devices()
    {
        Assert.True(File.Exists("/usr/bin/mosquitto_pub"), "mosquitto-clients is needed (./build.sh test installs it)");
        _h.StartHub();
        _h.Enroll("rogue-1"); // a device with valid credentials that sends garbage on its own topics
        var password = Password("rogue-1");
        foreach (var (topic, payload) in new[]
                 {
                     ("edgeml/rogue-1/tele", "{not json"),
                     ("edgeml/rogue-1/tele", "{\"device\":\"press-9\",\"records\":[]}"), // claims another device
                     ("edgeml/rogue-1/status", "[]"),
                 })
        {
            var (code, _, err) = HubHarness.Run("/usr/bin/mosquitto_pub", "-p", HubHarness.Str(_h.Mqtt), "-i", "rogue-1", "-u", "rogue-1", "-P", password,
                "-t", topic, "-m", payload, "-q", "1");
            Assert.True(code == 0, $"mosquitto_pub: {err}"); // acknowledged: re-sending garbage would not help
        }

        using var agent = _h.Agent("press-9", 20, fast: true);
        Assert.True(agent.WaitForExit(60_000));
        Assert.Equal(20, _h.Stored("press-9").Count);
        Assert.Equal(3, Malformed());
    }

    [Fact]
    public async Task After_an_external_broker_loses_its_retained_messages_the_hub_publishes_every_desired_state_again()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        var keys = Path.Combine(_h.Dir.Path, "keys");
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "keys", "create", "ops", "--dir", keys).Code);
        using var broker = new Mosquitto().Start(); // no persistence: a restart forgets retained messages
        _h.StartHub(broker.Url, "--TrustedKeys:0", Path.Combine(keys, "ops.pub"));
        Assert.True(_h.WaitSubscribed(30_000), "the hub did not subscribe at the external broker");
        var package = _h.SignedVariant("1.1.0", Path.Combine(keys, "ops.key"));
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "model", "push", package, "--hub", _h.HubUrl, "--token", _h.OperatorToken).Code);
        _h.Register("ext-7");
        Assert.True((await _h.Api.PostAsJsonAsync("/api/devices/ext-7/desired", new { model = "vibration-fault@1.1.0" })).IsSuccessStatusCode);

        string Retained() => HubHarness.Run("/usr/bin/mosquitto_sub", "-p", HubHarness.Str(broker.Port), "-t", "edgeml/ext-7/state/desired", "-C", "1", "-W", "2").Out;
        HubHarness.Until(() => Retained().Contains("\"1.1.0\"", StringComparison.Ordinal), "the retained desired state");
        broker.Stop();
        broker.Start(); // it has forgotten the retained message (no persistence); what it holds now, the hub published again
        HubHarness.Until(() => Retained().Contains("\"1.1.0\"", StringComparison.Ordinal), "the desired state published again after the hub reconnected", 40_000);
    }

    private string Password(string device) => _h.DevicePassword(device);

    public void Dispose() => _h.Dispose();
}
