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
    private int _requests;

    /// <summary>What the server does with a request: serve <see cref="_serve"/> (default), or something worse.</summary>
    private Func<HttpListenerContext, Task>? _handler;

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

                Interlocked.Increment(ref _requests);
                if (_handler is { } handler)
                {
                    await handler(context);
                    continue;
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

        var (report, updater, data) = await UpdateAsync(desired, [pub]);
        Assert.Contains(reason, report.Reason, StringComparison.Ordinal);
        AssertNothingChanged(report, updater, data);
    }

    private async Task<(ReportedState Report, ModelUpdater Updater, string Data)> UpdateAsync(
        DesiredModel desired, string[] trustedKeys, string? hubUrl = null, List<string>? signingKeys = null, string? dataOverride = null)
    {
        var data = dataOverride ?? Path.Combine(_dir.Path, $"device-{Guid.NewGuid():N}");
        var options = new AgentOptions { Model = TestPackages.VibrationInt8, Sensor = "sim:vibration", DataDirectory = data };
        using var runtime = new AgentRuntime(options, NullLoggerFactory.Instance);
        var slots = new ModelSlots(data, options.Model);
        slots.Resolve(DateTimeOffset.UtcNow);
        var reports = new List<ReportedState>();
        var failed = new TaskCompletionSource<ReportedState>(TaskCreationOptions.RunContinuationsAsynchronously);
        var context = new UpdateContext(runtime.Runner.Manifest, options.Inference, runtime.Pipeline, runtime.Health, _ => failed.TrySetException(new InvalidOperationException("restarted")));
        var hub = new EdgeMl.Agent.Sync.HubSettings { HubUrl = hubUrl ?? _url, DeviceId = "dev-1", Password = "secret", SigningKeys = signingKeys ?? [] };
        var updater = new ModelUpdater(data, hub, trustedKeys, slots, context, r =>
        {
            lock (reports) reports.Add(r);
            if (r.Phase == "failed") failed.TrySetResult(r);
            return Task.CompletedTask;
        }, TimeProvider.System, NullLogger.Instance);
        _updaters.Add(updater);

        updater.OnDesired(desired);
        var report = await failed.Task.WaitAsync(TimeSpan.FromSeconds(30));
        lock (reports) Assert.DoesNotContain(reports, r => r.Phase is "verified" or "staged" or "active");
        return (report, updater, data);
    }

    private static void AssertNothingChanged(ReportedState report, ModelUpdater updater, string data)
    {
        Assert.Equal("1.1.0", report.Version);
        Assert.Equal("vibration-fault@1.0.0", report.Active);
        Assert.False(File.Exists(updater.StagedPath));
        Assert.True(!Directory.Exists(updater.UpdatesDirectory) || Directory.GetFiles(updater.UpdatesDirectory, "*.part").Length == 0); // nothing half-checked is kept
        Assert.Equal(ModelSlots.Configured, new ModelSlots(data, TestPackages.VibrationInt8).ActiveSlot);
    }

    private readonly List<ModelUpdater> _updaters = [];

    /// <summary>A signing key and its public half in a file the device trusts (<c>Agent:TrustedKeys</c>).</summary>
    private (ECDsa Key, string PublicKeyFile) TrustedKey()
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var pub = Path.Combine(_dir.Path, $"ops-{Guid.NewGuid():N}.pub");
        File.WriteAllText(pub, key.ExportSubjectPublicKeyInfoPem());
        return (key, pub);
    }

    private static DesiredModel Announce(byte[] package, string? url = null) => new()
    {
        Name = "vibration-fault", Version = "1.1.0", Url = url ?? "/api/models/vibration-fault/1.1.0/package",
        Sha256 = Convert.ToHexStringLower(SHA256.HashData(package)), SizeBytes = package.Length,
    };

    [Fact]
    public async Task A_default_configured_agent_refuses_an_unsigned_package_over_the_air()
    {
        _serve = Package(null);
        var (report, updater, data) = await UpdateAsync(Announce(_serve), trustedKeys: []); // no Agent:TrustedKeys, no keys from enrollment
        Assert.Contains("trusts no signing keys", report.Reason, StringComparison.Ordinal);
        AssertNothingChanged(report, updater, data);
    }

    [Fact]
    public async Task The_signing_keys_from_enrollment_are_what_an_enrolled_device_trusts()
    {
        using var ops = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        _serve = Package(other);
        var (report, _, _) = await UpdateAsync(Announce(_serve), trustedKeys: [], signingKeys: [ops.ExportSubjectPublicKeyInfoPem()]);
        Assert.Contains("which is not trusted here", report.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("http://127.0.0.1:{other}/api/models/x/1/package")] // another port on the same host
    [InlineData("http://evil.example/api/models/x/1/package")]
    [InlineData("//127.0.0.1:{other}/steal")] // scheme-relative: another authority
    [InlineData("https://127.0.0.1:{port}/api/models/x/1/package")] // another scheme
    [InlineData("http://dev-1:secret@127.0.0.1:{port}/x")] // credentials in the URL
    public async Task A_desired_state_pointing_off_the_hubs_origin_is_refused_and_no_request_is_made(string url)
    {
        using var elsewhere = new HttpListener();
        var otherPort = Loopback.FreePort();
        elsewhere.Prefixes.Add($"http://127.0.0.1:{otherPort}/");
        elsewhere.Start();
        var seen = 0;
        _ = Task.Run(async () =>
        {
            try
            {
                var c = await elsewhere.GetContextAsync();
                Interlocked.Increment(ref seen);
                c.Response.Close();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
            }
        });
        _serve = Package(null);
        var port = new Uri(_url).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var desired = Announce(_serve, url.Replace("{other}", otherPort.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal).Replace("{port}", port, StringComparison.Ordinal));
        using var ops = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var (report, updater, data) = await UpdateAsync(desired, trustedKeys: [], signingKeys: [ops.ExportSubjectPublicKeyInfoPem()]);
        Assert.Contains("not on the hub's origin", report.Reason, StringComparison.Ordinal);
        Assert.Equal(0, Volatile.Read(ref _requests));
        Assert.Equal(0, Volatile.Read(ref seen));
        AssertNothingChanged(report, updater, data);
    }

    [Fact]
    public async Task A_body_longer_than_announced_is_cut_and_refused()
    {
        var (ops, pub) = TrustedKey();
        using var key = ops;
        var good = Package(ops);
        var announced = Announce(good);
        _handler = async c =>
        {
            // No Content-Length: the body runs on far past what was announced.
            c.Response.SendChunked = true;
            var chunk = new byte[64 * 1024];
            for (var i = 0; i < 64; i++) await c.Response.OutputStream.WriteAsync(chunk);
            c.Response.Close();
        };
        var (report, updater, data) = await UpdateAsync(announced, [pub]);
        Assert.Contains($"more than the announced {good.Length} bytes", report.Reason, StringComparison.Ordinal);
        AssertNothingChanged(report, updater, data);
    }

    [Fact]
    public async Task A_resumed_download_whose_content_range_does_not_fit_the_file_is_refused()
    {
        var (ops, pub) = TrustedKey();
        using var key = ops;
        var good = Package(ops);
        var desired = Announce(good);
        _handler = async c =>
        {
            // Claims to resume from byte 0 whatever the device asked for.
            c.Response.StatusCode = 206;
            c.Response.AddHeader("Content-Range", $"bytes 0-{good.Length - 1}/{good.Length}");
            c.Response.ContentLength64 = good.Length - 100;
            await c.Response.OutputStream.WriteAsync(good.AsMemory(0, good.Length - 100));
            c.Response.Close();
        };
        var data = Path.Combine(_dir.Path, "device-resume");
        Directory.CreateDirectory(Path.Combine(data, "updates"));
        await File.WriteAllBytesAsync(Path.Combine(data, "updates", "vibration-fault-1.1.0.part"), good.AsMemory(0, 100).ToArray());
        var (report, _, _) = await UpdateAsync(desired, [pub], dataOverride: data);
        Assert.Contains("Content-Range", report.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_redirect_from_the_hub_is_refused_not_followed_and_not_retried()
    {
        var (ops, pub) = TrustedKey();
        using var key = ops;
        var good = Package(ops);
        _handler = c =>
        {
            c.Response.StatusCode = 302;
            c.Response.RedirectLocation = "http://attacker.example/steal";
            c.Response.Close();
            return Task.CompletedTask;
        };
        var (report, updater, data) = await UpdateAsync(Announce(good), [pub]);
        Assert.Contains("redirect", report.Reason, StringComparison.Ordinal);
        Assert.Equal(1, Volatile.Read(ref _requests));
        AssertNothingChanged(report, updater, data);
    }

    [Fact]
    public async Task A_device_without_signing_keys_refuses_before_downloading_anything()
    {
        _serve = Package(null);
        var (report, _, _) = await UpdateAsync(Announce(_serve), trustedKeys: []);
        Assert.Contains("trusts no signing keys", report.Reason, StringComparison.Ordinal);
        Assert.Equal(0, Volatile.Read(ref _requests));
    }

    [Fact]
    public async Task A_zip_bomb_is_refused_before_it_is_inflated()
    {
        var (ops, pub) = TrustedKey();
        using var key = ops;
        // A signed manifest, and a model entry that inflates to 1 GB of zeros (about 1 MB compressed).
        var original = ModelPackage.Open(TestPackages.VibrationInt8);
        var manifest = original.Manifest;
        manifest.Version = "1.1.0";
        var manifestBytes = ModelPackage.SerializeManifest(manifest);
        var path = Path.Combine(_dir.Path, "bomb.edgepkg");
        using (var zip = new System.IO.Compression.ZipArchive(File.Create(path), System.IO.Compression.ZipArchiveMode.Create))
        {
            using (var m = zip.CreateEntry(ModelPackage.ManifestEntryName).Open()) m.Write(manifestBytes);
            using (var sig = zip.CreateEntry(ModelPackage.SignatureEntryName).Open()) sig.Write(PackageSignature.Sign(manifestBytes, ops));
            using var model = zip.CreateEntry(ModelPackage.ModelEntryName, System.IO.Compression.CompressionLevel.SmallestSize).Open();
            var zeros = new byte[1 << 20];
            for (var i = 0; i < 1024; i++) model.Write(zeros);
        }

        _serve = await File.ReadAllBytesAsync(path);
        var before = GC.GetTotalAllocatedBytes();
        var (report, updater, data) = await UpdateAsync(Announce(_serve), [pub]);
        Assert.Contains("inflates", report.Reason, StringComparison.Ordinal);
        Assert.True(GC.GetTotalAllocatedBytes() - before < 256L << 20, "the bomb was inflated");
        AssertNothingChanged(report, updater, data);
    }

    public void Dispose()
    {
        foreach (var u in _updaters) u.Dispose();
        _listener.Close();
        _dir.Dispose();
    }
}
