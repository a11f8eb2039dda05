using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using EdgeMl.Protocol.Packages;
using EdgeMl.Protocol.Wire;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.Agent.Tests.Updates;

/// <summary>
/// The published native agent against a hostile "hub": Debian's mosquitto as its broker, where the test writes the
/// retained desired state with mosquitto_pub, and a local HTTP listener that serves an unsigned package and counts
/// requests. A default-configured agent (no trusted keys) refuses the package without downloading it; a desired state
/// that points at another origin is refused with no request made. Both are reported on <c>state/reported</c>.
/// </summary>
public sealed class PublishedAgentTrustTests : IDisposable
{
    private static readonly string X64 = Path.Combine(TestPackages.RepositoryRoot, "artifacts", "publish", "linux-x64", "edgeml-agent");
    private readonly TempDirectory _dir = new();
    private readonly HttpListener _listener = new();
    private readonly int _port = EdgeMl.FleetSim.Loopback.FreePort();
    private int _requests;

    public PublishedAgentTrustTests()
    {
        _listener.Prefixes.Add($"http://127.0.0.1:{_port}/");
        _listener.Start();
        _ = Task.Run(async () =>
        {
            while (_listener.IsListening)
            {
                try
                {
                    var c = await _listener.GetContextAsync();
                    Interlocked.Increment(ref _requests);
                    c.Response.StatusCode = 404;
                    c.Response.Close();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
                {
                    return;
                }
            }
        });
    }

    [SkippableTheory]
    [InlineData("/api/models/vibration-fault/1.1.0/package", false, "trusts no signing keys")]
    [InlineData("http://127.0.0.1:1/api/models/vibration-fault/1.1.0/package", true, "no request was made")]
    public void The_native_agent_refuses_what_the_desired_state_offers_without_making_a_request(string url, bool trustsAKey, string reason)
    {
        var required = Environment.GetEnvironmentVariable("EDGEML_REQUIRE_PUBLISHED") == "1";
        if (required) Assert.True(File.Exists(X64), $"{X64} is missing: ./build.sh publish did not run");
        Skip.IfNot(File.Exists(X64), $"{X64} not published (run ./build.sh test)");
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new Mosquitto().Start();
        using var reported = new MosquittoSub(broker.Port, "edgeml/dev-9/state/reported", "watcher");

        var desired = new DesiredModel { Name = "vibration-fault", Version = "1.1.0", Sha256 = new string('a', 64), SizeBytes = 1000, Url = url };
        var json = System.Text.Json.JsonSerializer.Serialize(desired, EdgeMl.Protocol.Json.CompactJsonContext.Default.DesiredModel);
        using (var pub = Process.Start("/usr/bin/mosquitto_pub", ["-p", broker.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-t", "edgeml/dev-9/state/desired", "-r", "-q", "1", "-m", json])!)
        {
            Assert.True(pub.WaitForExit(10_000));
        }

        string[] keys = [];
        var model = TestPackages.VibrationInt8;
        if (trustsAKey)
        {
            // A device with a pinned key: its own model signed by it, so that it starts.
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var pub = Path.Combine(_dir.Path, "ops.pub");
            File.WriteAllText(pub, key.ExportSubjectPublicKeyInfoPem());
            keys = [$"--Agent:TrustedKeys:0={pub}"];
            var original = ModelPackage.Open(model);
            model = Path.Combine(_dir.Path, "signed.edgepkg");
            ModelPackage.WriteRaw(model, original.ManifestBytes, original.ModelBytes, PackageSignature.Sign(original.ManifestBytes, key));
        }

        var psi = new ProcessStartInfo(X64, ["run", "--model", model, "--sensor", "sim:vibration", "--quiet", "--data", Path.Combine(_dir.Path, "data"),
            "--hub", broker.Url, "--device", "dev-9", $"--Agent:Hub:HubUrl=http://127.0.0.1:{_port}", .. keys]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var agent = Process.Start(psi)!;
        agent.OutputDataReceived += (_, _) => { };
        agent.ErrorDataReceived += (_, _) => { };
        agent.BeginOutputReadLine();
        agent.BeginErrorReadLine();
        try
        {
            reported.WaitUntil(m => m.Any(x => x.Payload.Contains("\"failed\"", StringComparison.Ordinal)), "the agent's failed report", 30_000);
            var failed = reported.Messages.Last(x => x.Payload.Contains("\"failed\"", StringComparison.Ordinal)).Payload;
            Assert.True(failed.Contains(reason, StringComparison.Ordinal), failed);
            Assert.Equal(0, Volatile.Read(ref _requests));
            Assert.False(agent.HasExited); // it keeps running its model
        }
        finally
        {
            if (!agent.HasExited) agent.Kill(entireProcessTree: true);
            agent.WaitForExit();
        }
    }

    /// <summary>
    /// A desired state the agent cannot accept (a hub newer than the agent, or a hostile writer on the broker) is not
    /// only logged: it is reported as failed with the reason — naming the model where the payload does — so a rollout
    /// of that model halts on it instead of waiting out its timeout. The agent keeps running its model.
    /// </summary>
    [SkippableTheory]
    [InlineData("{\"name\":\"vibration-fault\",\"version\":\"1.1.0\",\"sha256\":\"xyz\",\"sizeBytes\":1000,\"url\":\"/p\"}", "vibration-fault", "desired sha256 is not 64 hexadecimal digits")]
    [InlineData("{\"name\":\"vibration-fault\",\"version\":\"1.1.0\",\"sha256\":\"\",\"sizeBytes\":1,\"url\":\"/p\",\"shadowSeconds\":-5}", "vibration-fault", "shadowSeconds -5 is outside 0..604800")]
    [InlineData("[1,2,3]", "", "desired state")]
    public void A_desired_state_the_agent_cannot_accept_is_reported_as_failed_with_the_reason(string payload, string name, string reason)
    {
        var required = Environment.GetEnvironmentVariable("EDGEML_REQUIRE_PUBLISHED") == "1";
        if (required) Assert.True(File.Exists(X64), $"{X64} is missing: ./build.sh publish did not run");
        Skip.IfNot(File.Exists(X64), $"{X64} not published (run ./build.sh test)");
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new Mosquitto().Start();
        using var reported = new MosquittoSub(broker.Port, "edgeml/dev-8/state/reported", "watcher");
        using (var pub = Process.Start("/usr/bin/mosquitto_pub", ["-p", broker.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-t", "edgeml/dev-8/state/desired", "-r", "-q", "1", "-m", payload])!)
        {
            Assert.True(pub.WaitForExit(10_000));
        }

        var psi = new ProcessStartInfo(X64, ["run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--quiet", "--data", Path.Combine(_dir.Path, "data"),
            "--hub", broker.Url, "--device", "dev-8", $"--Agent:Hub:HubUrl=http://127.0.0.1:{_port}"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var agent = Process.Start(psi)!;
        agent.OutputDataReceived += (_, _) => { };
        agent.ErrorDataReceived += (_, _) => { };
        agent.BeginOutputReadLine();
        agent.BeginErrorReadLine();
        try
        {
            reported.WaitUntil(m => m.Any(x => x.Payload.Contains("\"failed\"", StringComparison.Ordinal)), "the agent's failed report", 30_000);
            var failed = DeviceMessageParser.ParseReported(new System.Buffers.ReadOnlySequence<byte>(System.Text.Encoding.UTF8.GetBytes(
                reported.Messages.Last(x => x.Payload.Contains("\"failed\"", StringComparison.Ordinal)).Payload)));
            Assert.Equal(("failed", name), (failed.Phase, failed.Name));
            Assert.StartsWith("desired state refused: ", failed.Reason, StringComparison.Ordinal);
            Assert.Contains(reason, failed.Reason, StringComparison.Ordinal);
            Assert.Equal("vibration-fault@1.0.0", failed.Active);
            Assert.Equal(0, Volatile.Read(ref _requests));
            Assert.False(agent.HasExited); // it keeps running its model
        }
        finally
        {
            if (!agent.HasExited) agent.Kill(entireProcessTree: true);
            agent.WaitForExit();
        }
    }

    public void Dispose()
    {
        _listener.Close();
        _dir.Dispose();
    }
}
