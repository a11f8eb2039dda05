using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// <c>--BrokerDynsec</c>: the hub on a real Mosquitto with its dynamic-security plugin writes devices' logins and
/// per-device roles there, so enrollment and revocation work as on the embedded broker; mosquitto_pub/mosquitto_sub
/// with a device's credentials act as the hostile third-party client (issue 13).
/// </summary>
public sealed class HubDynsecTests : IDisposable
{
    private const string Admin = "dynsec-admin-pw";
    private readonly HubHarness _h = new();

    private static (int Code, string Out, string Err) Pub(Mosquitto broker, string client, string user, string password, string topic, string payload, params string[] extra) =>
        HubHarness.Run("/usr/bin/mosquitto_pub", ["-p", HubHarness.Str(broker.Port), "-i", client, "-u", user, "-P", password, "-t", topic, "-m", payload, "-q", "1", .. extra]);

    private Mosquitto StartHubOnDynsec()
    {
        Assert.True(Mosquitto.Available && File.Exists(Mosquitto.DynsecPlugin), "mosquitto with its dynamic-security plugin is needed (./build.sh test installs it)");
        var broker = new Mosquitto(dynsecAdminPassword: Admin).Start();
        try
        {
            _h.StartHub(broker.Url, "--BrokerUser", "admin", "--BrokerPassword", Admin, "--BrokerDynsec", "true");
            Assert.True(_h.WaitSubscribed(30_000), "the hub did not subscribe at the external broker");
            // Giving itself the hub's role makes Mosquitto end the hub's connection once; ready on the next connect.
            HubHarness.Until(() => _h.HubLog.Any(l => l.Contains("follow the hub", StringComparison.Ordinal)), "the hub to manage devices' logins", 20_000);
            Assert.DoesNotContain(_h.HubLog, l => l.Contains("devices cannot be enrolled or revoked", StringComparison.Ordinal));
            return broker;
        }
        catch
        {
            broker.Dispose(); // no mosquitto left behind when the start fails
            throw;
        }
    }

    [Fact]
    public void Enrolled_devices_log_in_at_mosquitto_with_their_own_password_each_only_under_its_own_topics_and_revocation_ends_the_login()
    {
        using var broker = StartHubOnDynsec();
        _h.Enroll("dyn-a");
        _h.Enroll("dyn-b");
        var a = _h.DevicePassword("dyn-a");
        var b = _h.DevicePassword("dyn-b");

        // The real agent delivers through mosquitto with the password it got at enrollment.
        var agentLog = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var agent = _h.Agent("dyn-a", 0, fast: false, onLine: agentLog.Enqueue);
        HubHarness.Until(() => _h.Records("dyn-a") >= 3, "records from dyn-a's agent through mosquitto");

        // A watcher with the admin's login sees everything that gets through.
        using var watch = new MosquittoSub(broker.Port, "edgeml/#", "watcher", ["-u", "admin", "-P", Admin]);
        HubHarness.Until(() => watch.Messages.Any(m => m.Topic == "edgeml/dyn-a/tele"), "the watcher to see dyn-a's batches");

        // dyn-b's login: not with another client id (no session takeover of dyn-a), not with dyn-a's password, nor a made-up device.
        foreach (var (client, user, password) in new[] { ("dyn-a", "dyn-b", b), ("dyn-b", "dyn-b", a), ("ghost", "ghost", b) })
        {
            var (code, _, err) = Pub(broker, client, user, password, $"edgeml/{client}/tele", "{}");
            Assert.NotEqual(0, code);
            Assert.Matches("Connection Refused: (not authorised|bad user name or password)", err);
        }

        // dyn-b writing on dyn-a's topics (MQTT 3.1.1 and 5) and on its own topics where only the hub writes: dropped by mosquitto.
        var forgedBatch = """{"device":"dyn-a","records":[{"boot":"forged","seq":1,"class":"telemetry","at":1,"data":{}}]}""";
        Pub(broker, "dyn-b", "dyn-b", b, "edgeml/dyn-a/tele", forgedBatch);
        Pub(broker, "dyn-b", "dyn-b", b, "edgeml/dyn-a/tele", forgedBatch, "-V", "mqttv5");
        Pub(broker, "dyn-b", "dyn-b", b, "edgeml/dyn-a/state/desired", "{}", "-r");
        Pub(broker, "dyn-b", "dyn-b", b, "edgeml/dyn-b/state/desired", "{}", "-r");
        Pub(broker, "dyn-b", "dyn-b", b, "edgeml/alerts/offline", "{}");
        // Its own reported state goes through, and comes after the forged ones on the same broker.
        var reported = """{"phase":"active","name":"m","version":"1.0.0","at":"2026-01-01T00:00:00Z"}""";
        Assert.Equal(0, Pub(broker, "dyn-b", "dyn-b", b, "edgeml/dyn-b/state/reported", reported, "-r").Code);
        HubHarness.Until(() => watch.Messages.Any(m => m.Topic == "edgeml/dyn-b/state/reported"), "dyn-b's own reported state at the watcher");
        var seen = watch.Messages;
        Assert.DoesNotContain(seen, m => m.Topic.EndsWith("/state/desired", StringComparison.Ordinal) || m.Topic == "edgeml/alerts/offline");
        Assert.DoesNotContain(seen, m => m.Payload.Contains("forged", StringComparison.Ordinal));
        Assert.DoesNotContain(_h.Stored("dyn-a"), r => r.Boot == "forged");

        // Reading the fleet or another device: every subscription denied; its own subtree works.
        foreach (var filter in new[] { "#", "edgeml/+/tele", "edgeml/dyn-a/#", "$SYS/#" })
        {
            var (_, _, err) = HubHarness.Run("/usr/bin/timeout", "10", "/usr/bin/mosquitto_sub", "-p", HubHarness.Str(broker.Port), "-i", "dyn-b", "-u", "dyn-b", "-P", b, "-t", filter, "-C", "1");
            Assert.Contains("All subscription requests were denied", err, StringComparison.Ordinal);
        }

        var (subCode, heard, subErr) = HubHarness.Run("/usr/bin/mosquitto_sub", "-p", HubHarness.Str(broker.Port), "-i", "dyn-b", "-u", "dyn-b", "-P", b,
            "-t", "edgeml/dyn-b/state/#", "-C", "1", "-v", "-W", "10");
        Assert.True(subCode == 0, subErr);
        Assert.Equal($"edgeml/dyn-b/state/reported {reported}", heard.Trim());

        // Revocation through the CLI: mosquitto ends the agent's open connection and refuses its password.
        Assert.DoesNotContain(agentLog, l => l.Contains("Uplink to", StringComparison.Ordinal));
        var (code2, stdout, err2) = HubHarness.Run(HubHarness.CliDll, "devices", "revoke", "dyn-a", "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        Assert.True(code2 == 0, err2);
        Assert.Contains("revoked", stdout, StringComparison.Ordinal);
        // Mosquitto does not deliver its Last Will then (the will is checked against the deleted client's ACLs): the agent
        // says its uplink went down, and the hub marked it offline itself.
        HubHarness.Until(() => agentLog.Any(l => l.Contains("Uplink to", StringComparison.Ordinal) && l.Contains("down", StringComparison.Ordinal)), "dyn-a's connection ended at revocation");
        Assert.Equal("offline", _h.Device("dyn-a").GetProperty("presence").GetString());
        var stored = _h.Records("dyn-a");
        Thread.Sleep(2000); // the agent keeps trying to reconnect meanwhile
        Assert.False(agent.HasExited);
        Assert.Equal(stored, _h.Records("dyn-a"));
        var (pubCode, _, pubErr) = Pub(broker, "dyn-a", "dyn-a", a, "edgeml/dyn-a/tele", "{}");
        Assert.NotEqual(0, pubCode);
        Assert.Matches("Connection Refused: (not authorised|bad user name or password)", pubErr);
        agent.Kill();
        agent.WaitForExit();
    }

    [Fact]
    public void Enrollment_and_revocation_while_mosquitto_is_down_reach_it_when_it_is_back_and_devices_enrolled_before_dynsec_are_reported()
    {
        Assert.True(Mosquitto.Available && File.Exists(Mosquitto.DynsecPlugin), "mosquitto with its dynamic-security plugin is needed (./build.sh test installs it)");
        using var broker = new Mosquitto(dynsecAdminPassword: Admin).Start();
        static bool CanLogIn(Mosquitto broker, string device, string password) =>
            Pub(broker, device, device, password, $"edgeml/{device}/status", """{"state":"online","boot":"b1"}""").Code == 0;
        string? Login(string device) => _h.Device(device).GetProperty("brokerLogin") is { ValueKind: System.Text.Json.JsonValueKind.String } l ? l.GetString() : null;
        int Reconciled() => _h.HubLog.Count(l => l.Contains("logins at", StringComparison.Ordinal) && l.Contains("reconciled", StringComparison.Ordinal));

        // A device enrolled while the hub did not manage logins at the broker (no --BrokerDynsec) has none there.
        _h.StartHub(broker.Url, "--BrokerUser", "admin", "--BrokerPassword", Admin);
        Assert.True(_h.WaitSubscribed(30_000), "the hub did not connect");
        _h.Enroll("old-1");
        _h.KillHub();

        _h.StartHub(broker.Url, "--BrokerUser", "admin", "--BrokerPassword", Admin, "--BrokerDynsec", "true");
        Assert.True(_h.WaitSubscribed(30_000), "the hub did not subscribe at the external broker");
        HubHarness.Until(() => Reconciled() >= 1, "the first reconcile of logins");
        // Said at start, and in the device's view: the plugin cannot import the hub's password hashes, so: enroll again.
        Assert.Contains(_h.HubLog, l => l.Contains("have no login at", StringComparison.Ordinal) && l.Contains("old-1", StringComparison.Ordinal)
                                        && l.Contains("Enroll each again", StringComparison.Ordinal));
        Assert.Equal("missing", Login("old-1"));
        Assert.False(CanLogIn(broker, "old-1", _h.DevicePassword("old-1")));

        _h.Enroll("keep-1");
        _h.Enroll("gone-1");
        Assert.Equal("ok", Login("keep-1"));
        var late = _h.Register("late-1");

        // Mosquitto goes away; meanwhile gone-1 is revoked and late-1 claims its enrollment: both answer as usual.
        broker.StopGracefully();
        HubHarness.Until(() => _h.HubLog.Any(l => l.Contains("unreachable", StringComparison.Ordinal)), "the hub to notice the broker is away");
        var revoke = HubHarness.Run(HubHarness.CliDll, "devices", "revoke", "gone-1", "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        Assert.True(revoke.Code == 0, revoke.Err);
        Assert.Equal("revoking", Login("gone-1"));
        var enroll = HubHarness.Run(HubHarness.AgentDll, "enroll", "--hub", $"127.0.0.1:{_h.Http}", "--token", late, "--data", _h.AgentData("late-1"));
        Assert.True(enroll.Code == 0, enroll.Err);
        Assert.Equal("pending", Login("late-1"));

        // Back: the hub reconnects and replays both before it says it reconciled.
        var before = Reconciled();
        broker.Start();
        HubHarness.Until(() => Reconciled() > before, "the reconcile after the broker came back");
        Assert.True(CanLogIn(broker, "late-1", _h.DevicePassword("late-1")), "late-1, enrolled while the broker was away, cannot log in");
        Assert.False(CanLogIn(broker, "gone-1", _h.DevicePassword("gone-1")), "gone-1, revoked while the broker was away, can still log in");
        Assert.True(CanLogIn(broker, "keep-1", _h.DevicePassword("keep-1")));
        Assert.Equal("ok", Login("late-1"));
        Assert.Null(Login("gone-1"));
        Assert.Equal("missing", Login("old-1"));

        // Clients the hub does not own are never touched: one made by hand under a revoked device's name (without the
        // hub's role for it) survives the next reconcile.
        var (code, _, err) = HubHarness.Run("/usr/bin/mosquitto_ctrl", "-p", HubHarness.Str(broker.Port), "-u", "admin", "-P", Admin, "dynsec", "createClient", "gone-1", "-p", "own-pw");
        Assert.True(code == 0, err);
        before = Reconciled();
        broker.StopGracefully();
        broker.Start();
        HubHarness.Until(() => Reconciled() > before, "the reconcile after the second restart");
        var (listCode, clients, listErr) = HubHarness.Run("/usr/bin/mosquitto_ctrl", "-p", HubHarness.Str(broker.Port), "-u", "admin", "-P", Admin, "dynsec", "listClients");
        Assert.True(listCode == 0, listErr);
        Assert.Contains("gone-1", clients.Split('\n').Select(l => l.Trim()));
        Assert.Contains("late-1", clients.Split('\n').Select(l => l.Trim()));

        // Enrolling a device under the name of a client the hub did not create is refused, naming it, and that client and
        // its password stay as the administrator made them.
        (code, _, err) = HubHarness.Run("/usr/bin/mosquitto_ctrl", "-p", HubHarness.Str(broker.Port), "-u", "admin", "-P", Admin, "dynsec", "createClient", "gw-1", "-p", "gw-pw");
        Assert.True(code == 0, err);
        var gwToken = _h.Register("gw-1");
        var gwEnroll = HubHarness.Run(HubHarness.AgentDll, "enroll", "--hub", $"127.0.0.1:{_h.Http}", "--token", gwToken, "--data", _h.AgentData("gw-1"));
        Assert.NotEqual(0, gwEnroll.Code);
        Assert.Contains("the hub did not create", gwEnroll.Err, StringComparison.Ordinal);
        Assert.True(CanLogIn(broker, "gw-1", "gw-pw"), "the hand-made client gw-1 was replaced by an enrollment");
    }

    [Fact]
    public void Without_the_plugin_the_hub_says_so_at_start_and_enrollment_fails_with_a_reason()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new Mosquitto(passwords: new Dictionary<string, string> { ["hub"] = "hub-pw" }).Start(); // no plugin
        _h.StartHub(broker.Url, "--BrokerUser", "hub", "--BrokerPassword", "hub-pw", "--BrokerDynsec", "true");
        Assert.True(_h.WaitSubscribed(30_000), "the hub did not subscribe at the external broker");
        Assert.Single(_h.HubLog, l => l.Contains("--BrokerDynsec: devices cannot be enrolled or revoked", StringComparison.Ordinal)
                                      && l.Contains("dynamic-security plugin", StringComparison.Ordinal));

        var token = _h.Register("nodyn-1");
        var (code, _, err) = HubHarness.Run(HubHarness.AgentDll, "enroll", "--hub", $"127.0.0.1:{_h.Http}", "--token", token, "--data", _h.AgentData("nodyn-1"));
        Assert.NotEqual(0, code);
        Assert.Contains("the broker did not take this device's login", err, StringComparison.Ordinal);
    }

    public void Dispose() => _h.Dispose();
}
