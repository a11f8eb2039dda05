using System.Text.Json;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.FleetHub.Tests;

/// <summary>The embedded broker with a certificate: TLS only, an agent enrolled with the CA delivers, third-party clients need the CA too.</summary>
public sealed class HubTlsTests : IDisposable
{
    private readonly HubHarness _h = new();

    [Fact]
    public void With_a_certificate_the_broker_speaks_tls_only_and_an_agent_enrolled_with_the_ca_delivers()
    {
        var pki = new TestCertificates(Path.Combine(_h.Dir.Path, "pki"));
        var (cert, key) = pki.Server();
        var tls = Mosquitto.FreePort();
        _h.StartHub(null, "--MqttPort", "0", "--MqttTlsPort", HubHarness.Str(tls), "--MqttTlsCertificate", cert, "--MqttTlsKey", key);

        var token = _h.Register("vault-1");
        var enroll = HubHarness.Run(HubHarness.AgentDll, "enroll", "--hub", $"127.0.0.1:{_h.Http}", "--token", token, "--data", _h.AgentData("vault-1"), "--ca", pki.CaPath);
        Assert.True(enroll.Code == 0, enroll.Err);
        Assert.Contains($"broker mqtts://127.0.0.1:{tls}", enroll.Out, StringComparison.Ordinal);

        var run = HubHarness.Run(HubHarness.AgentDll, "run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", "15", "--fast", "--quiet",
            "--data", _h.AgentData("vault-1"));
        Assert.True(run.Code == 0, run.Err);
        HubHarness.Until(() => _h.Records("vault-1") >= 15, "15 records over TLS");
        Assert.Equal(Enumerable.Range(1, 15).Select(i => (long)i), _h.Stored("vault-1").Select(r => r.Seq).Order());

        // Third-party clients: with the CA they get in (and the device's own credentials still count); without TLS,
        // or trusting another CA, they do not.
        var password = JsonDocument.Parse(File.ReadAllText(Path.Combine(_h.AgentData("vault-1"), "identity.json"))).RootElement.GetProperty("password").GetString()!;
        string[] Pub(params string[] extra) => ["-p", HubHarness.Str(tls), "-i", "vault-1", "-u", "vault-1", "-P", password, "-t", "edgeml/vault-1/state/reported", "-m", "x", "-q", "1", .. extra];
        Assert.Equal(0, HubHarness.Run("/usr/bin/mosquitto_pub", Pub("--cafile", pki.CaPath)).Code);
        Assert.NotEqual(0, HubHarness.Run("/usr/bin/mosquitto_pub", Pub()).Code);
        var other = new TestCertificates(Path.Combine(_h.Dir.Path, "other"));
        var (code, _, err) = HubHarness.Run("/usr/bin/mosquitto_pub", Pub("--cafile", other.CaPath));
        Assert.NotEqual(0, code);
        Assert.Contains("TLS error", err, StringComparison.Ordinal); // mosquitto_pub: the broker's certificate did not verify
    }

    [Fact]
    public void The_hub_reaches_an_external_broker_over_tls_with_credentials()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        var pki = new TestCertificates(Path.Combine(_h.Dir.Path, "pki"));
        var (cert, key) = pki.Server();
        using var broker = new Mosquitto(listenerOptions: $"certfile {cert}\nkeyfile {key}",
            passwords: new Dictionary<string, string> { ["edgeml-hub-1"] = "hub-secret", ["tls-1"] = "dev-secret" }).Start();
        _h.StartHub(broker.Url, "--BrokerUser", "edgeml-hub-1", "--BrokerPassword", "hub-secret", "--BrokerCa", pki.CaPath);
        Assert.True(_h.WaitSubscribed(30_000), "the hub did not log in at the TLS broker");
        using var agent = _h.Agent("tls-1", 20, fast: true,
            extra: ["--Agent:Hub:Username=tls-1", "--Agent:Hub:Password=dev-secret", $"--Agent:Hub:CaCertificate={pki.CaPath}"]);
        Assert.True(agent.WaitForExit(60_000));
        HubHarness.Until(() => _h.Records("tls-1") >= 20, "20 records through the TLS broker");
    }

    [Fact]
    public void A_login_the_broker_refuses_is_logged_as_refused_naming_the_settings_not_as_unreachable()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new Mosquitto(passwords: new Dictionary<string, string> { ["edgeml-hub-1"] = "hub-secret" }).Start();
        _h.StartHub(broker.Url, "--BrokerUser", "edgeml-hub-1", "--BrokerPassword", "wrong");
        HubHarness.Until(() => _h.HubLog.Any(l => l.Contains("the broker refused the hub's connection: BadUserNameOrPassword", StringComparison.Ordinal)
                                                  || l.Contains("the broker refused the hub's connection: NotAuthorized", StringComparison.Ordinal)),
            $"the refusal in the log; it said:\n{string.Join("\n", _h.HubLog.Where(l => l.Contains("broker", StringComparison.OrdinalIgnoreCase)).TakeLast(5))}", 20_000);
        Assert.Contains(_h.HubLog, l => l.Contains("check --BrokerUser and --BrokerPassword", StringComparison.Ordinal));
        Assert.DoesNotContain(_h.HubLog, l => l.Contains("The MQTT client is not connected", StringComparison.Ordinal));
        Assert.DoesNotContain(_h.HubLog, l => l.Contains("unreachable", StringComparison.Ordinal));
    }

    [Fact]
    public void Two_hubs_with_one_client_id_are_told_that_each_replica_needs_its_own()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new Mosquitto().Start();
        using var other = new HubHarness();
        _h.StartHub(broker.Url, "--ClientId", "twin");
        Assert.True(_h.WaitSubscribed(30_000), "the first hub did not subscribe");
        other.StartHub(broker.Url, "--ClientId", "twin");
        HubHarness.Until(() => _h.HubLog.Concat(other.HubLog).Any(l => l.Contains("another client connects with client id twin and takes the session over. Each replica needs its own --ClientId", StringComparison.Ordinal)),
            $"the warning that the session was taken over; they said:\n{string.Join("\n", _h.HubLog.Concat(other.HubLog).Where(l => l.Contains("ended", StringComparison.Ordinal)).Take(6))}", 20_000);
    }

    [Fact]
    public void Enrollment_over_https_with_a_private_ca_works_and_plain_http_is_warned_about()
    {
        var pki = new TestCertificates(Path.Combine(_h.Dir.Path, "pki"));
        var (cert, key) = pki.Server("api");
        _h.UseHttps(cert, key, pki.CaPath);
        _h.StartHub();

        // Without the CA the hub's certificate does not verify: refused, nothing enrolled.
        var token = _h.Register("safe-1");
        var refused = HubHarness.Run(HubHarness.AgentDll, "enroll", "--hub", _h.HubUrl, "--token", token, "--data", _h.AgentData("safe-1"));
        Assert.Equal(1, refused.Code);
        Assert.Contains("cannot reach the hub", refused.Err, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(_h.AgentData("safe-1"), "identity.json")));

        var enroll = HubHarness.Run(HubHarness.AgentDll, "enroll", "--hub", _h.HubUrl, "--token", token, "--data", _h.AgentData("safe-1"), "--ca", pki.CaPath);
        Assert.True(enroll.Code == 0, enroll.Err);
        Assert.DoesNotContain("plain HTTP", enroll.Err, StringComparison.Ordinal);
        var run = HubHarness.Run(HubHarness.AgentDll, "run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", "10", "--fast", "--quiet",
            "--data", _h.AgentData("safe-1"));
        Assert.True(run.Code == 0, run.Err);
        HubHarness.Until(() => _h.Records("safe-1") >= 10, "10 records from the device enrolled over HTTPS");

        // Plain HTTP works but says what it costs.
        var plainHub = new HubHarness();
        try
        {
            plainHub.StartHub();
            var plain = HubHarness.Run(HubHarness.AgentDll, "enroll", "--hub", $"127.0.0.1:{plainHub.Http}", "--token", plainHub.Register("open-1"), "--data", plainHub.AgentData("open-1"));
            Assert.True(plain.Code == 0, plain.Err);
            Assert.Contains("plain HTTP", plain.Err, StringComparison.Ordinal);
            Assert.Contains("travel in clear", plain.Err, StringComparison.Ordinal);
        }
        finally
        {
            plainHub.Dispose();
        }
    }

    public void Dispose() => _h.Dispose();
}
