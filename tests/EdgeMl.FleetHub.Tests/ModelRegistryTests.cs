using System.Net;
using System.Net.Http.Headers;
using EdgeMl.TestUtilities;

namespace EdgeMl.FleetHub.Tests;

/// <summary>The hub's model registry through the operator's CLI: signed pushes only, immutable versions, resumable downloads.</summary>
public sealed class ModelRegistryTests : IDisposable
{
    private readonly HubHarness _h = new();

    private (int Code, string Out, string Err) Edgeml(params string[] args) => HubHarness.Run(HubHarness.CliDll, [.. args, "--hub", _h.HubUrl, "--token", _h.OperatorToken]);

    private (int Code, string Out, string Err) Offline(params string[] args) => HubHarness.Run(HubHarness.CliDll, args);

    private string Signed(string source, string name, string key)
    {
        var path = Path.Combine(_h.Dir.Path, name);
        File.Copy(source, path);
        Assert.Equal(0, Offline("model", "sign", path, "--key", key).Code);
        return path;
    }

    [Fact]
    public async Task Only_packages_signed_by_a_trusted_key_enter_the_registry_versions_are_immutable_and_downloads_resume()
    {
        var keys = Path.Combine(_h.Dir.Path, "keys");
        Assert.Equal(0, Offline("keys", "create", "ops", "--dir", keys).Code);
        Assert.Equal(0, Offline("keys", "create", "intruder", "--dir", keys).Code);
        _h.StartHub(null, "--TrustedKeys:0", Path.Combine(keys, "ops.pub"));

        var int8 = Signed(TestPackages.VibrationInt8, "int8.edgepkg", Path.Combine(keys, "ops.key"));
        var push = Edgeml("model", "push", int8);
        Assert.True(push.Code == 0, push.Err);
        Assert.Contains("100% of", push.Err, StringComparison.Ordinal); // the progress line
        Assert.Matches(@"vibration-fault@1\.0\.0 in the registry: SHA-256 [0-9a-f]{16}…, signed by key [0-9a-f]{16}, pushed by bootstrap", push.Out);
        Assert.Equal(0, Edgeml("model", "push", int8).Code); // the same package again: fine, nothing changes

        // Unsigned, signed by another key, another package under the same name and version, altered: refused.
        var unsigned = Path.Combine(_h.Dir.Path, "unsigned.edgepkg");
        File.Copy(TestPackages.VibrationInt8, unsigned);
        var foreign = Signed(TestPackages.VibrationInt8, "foreign.edgepkg", Path.Combine(keys, "intruder.key"));
        var other = Signed(TestPackages.VibrationFp32, "fp32.edgepkg", Path.Combine(keys, "ops.key"));
        // A byte flipped in a signed package (in the compressed model); a signed manifest whose model SHA-256 is wrong.
        var flipped = Signed(TestPackages.VibrationInt8, "flipped.edgepkg", Path.Combine(keys, "ops.key"));
        var flippedBytes = await File.ReadAllBytesAsync(flipped);
        flippedBytes[flippedBytes.Length / 2] ^= 0x20;
        await File.WriteAllBytesAsync(flipped, flippedBytes);
        var wrongSha = Path.Combine(_h.Dir.Path, "wrong-sha.edgepkg");
        var original = EdgeMl.Protocol.Packages.ModelPackage.Open(TestPackages.VibrationInt8);
        var manifest = original.Manifest;
        manifest.Version = "1.0.1";
        manifest.Model.Sha256 = new string('0', 64);
        using (var key = System.Security.Cryptography.ECDsa.Create())
        {
            // Signed in-process: `edgeml model sign` itself refuses a package whose model does not match its manifest.
            key.ImportFromPem(await File.ReadAllTextAsync(Path.Combine(keys, "ops.key")));
            var manifestBytes = EdgeMl.Protocol.Packages.ModelPackage.SerializeManifest(manifest);
            EdgeMl.Protocol.Packages.ModelPackage.WriteRaw(wrongSha, manifestBytes, original.ModelBytes, EdgeMl.Protocol.Packages.PackageSignature.Sign(manifestBytes, key));
        }
        foreach (var (package, reason) in new[]
                 {
                     (unsigned, "is not signed"), (foreign, "not trusted here"), (other, "versions are immutable"), (flipped, "corrupted"),
                     (wrongSha, "but manifest model.sha256 says '0000"),
                 })
        {
            var refused = Edgeml("model", "push", package);
            Assert.Equal(1, refused.Code);
            // After the progress line, on a line of its own.
            Assert.Contains(refused.Err.Split('\n'), l => l.StartsWith("error: ", StringComparison.Ordinal) && l.Contains(reason, StringComparison.Ordinal));
        }

        // A token the hub refuses: the hub answers before the file is sent (Expect: 100-continue), so no progress at all.
        var wrongToken = HubHarness.Run(HubHarness.CliDll, "model", "push", int8, "--hub", _h.HubUrl, "--token", "op_" + new string('x', 40));
        Assert.Equal(1, wrongToken.Code);
        Assert.DoesNotContain("pushing", wrongToken.Err, StringComparison.Ordinal);
        Assert.StartsWith("error: ", wrongToken.Err.Trim(), StringComparison.Ordinal);

        var list = Edgeml("model", "list");
        Assert.Equal(0, list.Code);
        Assert.Single(list.Out.Split('\n'), l => l.StartsWith("vibration-fault", StringComparison.Ordinal));

        // A device resumes a download from where it stopped: HTTP range requests.
        var bytes = await File.ReadAllBytesAsync(int8);
        using var part = new HttpRequestMessage(HttpMethod.Get, "/api/models/vibration-fault/1.0.0/package");
        part.Headers.Range = new RangeHeaderValue(1000, null);
        using var response = await _h.Api.SendAsync(part);
        Assert.Equal(HttpStatusCode.PartialContent, response.StatusCode);
        Assert.Equal(bytes[1000..], await response.Content.ReadAsByteArrayAsync());
        Assert.Equal(bytes, await _h.Api.GetByteArrayAsync("/api/models/vibration-fault/1.0.0/package"));
    }

    public void Dispose() => _h.Dispose();
}
