using System.Text.Json;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.Agent.Tests.Sync;

/// <summary>
/// The agent over TLS to Debian's mosquitto configured with a private CA and <c>require_certificate true</c>:
/// the agent checks the broker's certificate against the configured CA and presents its own.
/// </summary>
public sealed class TlsUplinkTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    [SkippableFact]
    public void The_agent_delivers_over_tls_with_its_client_certificate_to_a_broker_that_requires_one()
    {
        Skip.IfNot(Mosquitto.Available, "mosquitto is not installed (./build.sh test installs it)");
        var pki = new TestCertificates(Path.Combine(_dir.Path, "pki"));
        var (serverCert, serverKey) = pki.Server();
        var (deviceCert, deviceKey) = pki.Client("pump-tls");
        var (observerCert, observerKey) = pki.Client("observer");
        using var broker = new Mosquitto(listenerOptions: $"cafile {pki.CaPath}\ncertfile {serverCert}\nkeyfile {serverKey}\nrequire_certificate true").Start();
        var port = broker.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);

        // Without a client certificate the broker refuses the TLS handshake.
        var (anonCode, _, _) = Cli.AgentProcess.Exec("/usr/bin/mosquitto_pub", null,
            ["-p", port, "--cafile", pki.CaPath, "-t", "edgeml/x/tele", "-m", "x", "-q", "1"]);
        Assert.NotEqual(0, anonCode);

        using var sub = new MosquittoSub(broker.Port, "edgeml/#", "observer", ["--cafile", pki.CaPath, "--cert", observerCert, "--key", observerKey]);
        var (code, _, err) = Cli.AgentProcess.Agent(
            "run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", "12", "--fast", "--quiet",
            "--data", Path.Combine(_dir.Path, "agent"), "--hub", $"mqtts://127.0.0.1:{port}", "--device", "pump-tls",
            $"--Agent:Hub:CaCertificate={pki.CaPath}", $"--Agent:Hub:ClientCertificate={deviceCert}", $"--Agent:Hub:ClientKey={deviceKey}");
        Assert.True(code == 0, err);
        sub.WaitUntil(m => Records(m).Count >= 12, "12 records over TLS");
        Assert.Equal(Enumerable.Range(1, 12).Select(i => (long)i), Records(sub.Messages).Order());
    }

    [SkippableFact]
    public void A_broker_certificate_from_another_ca_is_refused_and_nothing_leaves_the_outbox()
    {
        Skip.IfNot(Mosquitto.Available, "mosquitto is not installed (./build.sh test installs it)");
        var pki = new TestCertificates(Path.Combine(_dir.Path, "pki"));
        var other = new TestCertificates(Path.Combine(_dir.Path, "other"));
        var (serverCert, serverKey) = pki.Server();
        using var broker = new Mosquitto(listenerOptions: $"certfile {serverCert}\nkeyfile {serverKey}").Start();
        var results = Path.Combine(_dir.Path, "results.jsonl");
        using var agent = Cli.AgentProcess.Start(
            "run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", "0", "--quiet", "--results", results,
            "--data", Path.Combine(_dir.Path, "agent"), "--hub", $"mqtts://127.0.0.1:{broker.Port}", "--device", "pump-mitm",
            $"--Agent:Hub:CaCertificate={other.CaPath}", "--Agent:Pipeline:Realtime=true", "--Agent:Hub:ReconnectMinMs=100", "--Agent:Hub:ReconnectMaxMs=200");

        // Wait for predictions (each stored before it is logged), however slowly this machine starts the agent.
        int Logged() => File.Exists(results) ? File.ReadLines(results).Count(l => l.Length > 0) : 0;
        var deadline = Environment.TickCount64 + 60_000;
        while (Logged() < 12 && Environment.TickCount64 < deadline) Thread.Sleep(100);
        agent.Kill();
        agent.WaitForExit();
        var logged = Logged();
        Assert.True(logged >= 12, $"only {logged} predictions in 60 s");
        var (_, status, _) = Cli.AgentProcess.Agent("status", "--data", Path.Combine(_dir.Path, "agent"), "--json");
        var waiting = JsonDocument.Parse(status).RootElement.GetProperty("outbox").GetProperty("depth").GetProperty("telemetry").GetInt64();
        Assert.True(waiting >= logged, $"{waiting} records waiting of {logged} predictions: none may have left over the untrusted link");
    }

    private static List<long> Records(List<(string Topic, string Payload)> messages) =>
        messages.Where(m => m.Topic == "edgeml/pump-tls/tele")
            .SelectMany(m => JsonDocument.Parse(m.Payload).RootElement.GetProperty("records").EnumerateArray())
            .Select(r => r.GetProperty("seq").GetInt64()).Distinct().ToList();

    public void Dispose() => _dir.Dispose();
}
