using System.Net;
using System.Security.Cryptography;
using EdgeMl.Agent.Configuration;
using EdgeMl.Agent.Hosting;
using EdgeMl.Agent.Updates;
using EdgeMl.FleetSim;
using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeMl.Agent.Tests.Updates;

/// <summary>
/// The device's checks on a downloaded package, with a real HTTP server standing in for a hub that serves what it
/// should not (the real hub's registry refuses such packages on upload): unsigned, signed by a key the device does not
/// trust, a flipped byte, a SHA-256 or size that does not match the announcement. Each is refused with its reason in
/// the reported state; nothing is staged and the running model stays.
/// </summary>
public sealed class ModelUpdaterTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly HttpListener _listener = new();
    private readonly string _url;
    private byte[] _serve = [];

    public ModelUpdaterTests()
    {
        _url = $"http://127.0.0.1:{Loopback.FreePort()}/";
        _listener.Prefixes.Add(_url);
        _listener.Start();
        _ = Task.Run(async () =>
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await _listener.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
                {
                    return;
                }

                var body = _serve;
                context.Response.ContentLength64 = body.Length;
                await context.Response.OutputStream.WriteAsync(body);
                context.Response.Close();
            }
        });
    }

    /// <summary>The bundled model as version 1.1.0, signed by <paramref name="key"/> (or not).</summary>
    private byte[] Package(ECDsa? key)
    {
        var original = ModelPackage.Open(TestPackages.VibrationInt8);
        var manifest = original.Manifest;
        manifest.Version = "1.1.0";
        var manifestBytes = ModelPackage.SerializeManifest(manifest);
        var path = Path.Combine(_dir.Path, $"pkg-{Guid.NewGuid():N}.edgepkg");
        ModelPackage.WriteRaw(path, manifestBytes, original.ModelBytes, key is null ? null : PackageSignature.Sign(manifestBytes, key));
        return File.ReadAllBytes(path);
    }

    [Theory]
    [InlineData("unsigned", "the package is not signed")]
    [InlineData("untrusted", "which is not trusted here")]
    [InlineData("flipped", "does not match the announced")]
    [InlineData("wrong-sha", "does not match the announced")]
    [InlineData("wrong-size", "the hub announced")]
    public async Task A_package_that_fails_a_check_is_refused_with_its_reason_and_nothing_changes(string kind, string reason)
    {
        using var ops = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var intruder = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var pub = Path.Combine(_dir.Path, "ops.pub");
        await File.WriteAllTextAsync(pub, ops.ExportSubjectPublicKeyInfoPem());
        var good = Package(ops);
        _serve = kind switch
        {
            "unsigned" => Package(null),
            "untrusted" => Package(intruder),
            "flipped" => [.. good],
            _ => good,
        };
        if (kind == "flipped") _serve[_serve.Length / 2] ^= 0x01;
        var announced = kind is "unsigned" or "untrusted" ? _serve : good;
        var desired = new DesiredModel
        {
            Name = "vibration-fault", Version = "1.1.0", Url = "/api/models/vibration-fault/1.1.0/package",
            Sha256 = kind == "wrong-sha" ? new string('a', 64) : Convert.ToHexStringLower(SHA256.HashData(announced)),
            SizeBytes = kind == "wrong-size" ? announced.Length + 10 : announced.Length,
        };

        var data = Path.Combine(_dir.Path, "device");
        var options = new AgentOptions { Model = TestPackages.VibrationInt8, Sensor = "sim:vibration", DataDirectory = data };
        using var runtime = new AgentRuntime(options, NullLoggerFactory.Instance);
        var slots = new ModelSlots(data, options.Model);
        slots.Resolve(DateTimeOffset.UtcNow);
        var reports = new List<ReportedState>();
        var failed = new TaskCompletionSource<ReportedState>(TaskCreationOptions.RunContinuationsAsynchronously);
        var context = new UpdateContext(runtime.Runner.Manifest, options.Inference, runtime.Pipeline, runtime.Health, _ => failed.TrySetException(new InvalidOperationException("restarted")));
        var hub = new EdgeMl.Agent.Sync.HubSettings { HubUrl = _url, DeviceId = "dev-1", Password = "secret" };
        using var updater = new ModelUpdater(data, hub, [pub], slots, context, r =>
        {
            lock (reports) reports.Add(r);
            if (r.Phase == "failed") failed.TrySetResult(r);
            return Task.CompletedTask;
        }, TimeProvider.System, NullLogger.Instance);

        updater.OnDesired(desired);
        var report = await failed.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Contains(reason, report.Reason, StringComparison.Ordinal);
        Assert.Equal("1.1.0", report.Version);
        Assert.Equal("vibration-fault@1.0.0", report.Active);
        lock (reports) Assert.DoesNotContain(reports, r => r.Phase is "verified" or "staged" or "active");
        Assert.False(File.Exists(updater.StagedPath));
        Assert.Empty(Directory.GetFiles(updater.UpdatesDirectory, "*.part")); // nothing half-checked is kept to resume from
        Assert.Equal(ModelSlots.Configured, new ModelSlots(data, options.Model).ActiveSlot);
    }

    public void Dispose()
    {
        _listener.Close();
        _dir.Dispose();
    }
}
