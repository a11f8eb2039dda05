using System.IO.Compression;
using System.Text;
using EdgeMl.TestUtilities;

namespace EdgeMl.FleetHub.Tests;

/// <summary>Signing keys and signed packages with the operator's <c>edgeml</c>; devices refuse anything their keys did not sign.</summary>
public sealed class PackageSigningTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    private (int Code, string Out, string Err) Edgeml(params string[] args) => HubHarness.Run(HubHarness.CliDll, args);

    private (int Code, string Out, string Err) Agent(params string[] args) => HubHarness.Run(HubHarness.AgentDll, args);

    private string Copy(string name)
    {
        var path = Path.Combine(_dir.Path, name);
        File.Copy(TestPackages.VibrationInt8, path);
        return path;
    }

    [Fact]
    public void A_package_signed_with_the_operators_key_is_accepted_and_unsigned_altered_or_foreign_ones_are_refused()
    {
        var keys = Path.Combine(_dir.Path, "keys");
        var created = Edgeml("keys", "create", "ops", "--dir", keys);
        Assert.True(created.Code == 0, created.Err);
        Assert.Matches("key [0-9a-f]{16}: private", created.Out);
        if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(keys, "ops.key")));
        Assert.Equal(1, Edgeml("keys", "create", "ops", "--dir", keys).Code); // never overwritten
        Assert.Equal(0, Edgeml("keys", "create", "intruder", "--dir", keys).Code);
        var trusted = Path.Combine(keys, "ops.pub");

        var signed = Copy("signed.edgepkg");
        var sign = Edgeml("model", "sign", signed, "--key", Path.Combine(keys, "ops.key"));
        Assert.True(sign.Code == 0, sign.Err);
        Assert.Equal(0, Edgeml("model", "verify", signed, "--trust", trusted).Code);
        var check = Agent("check-model", signed, "--trust", trusted);
        Assert.True(check.Code == 0, check.Err);
        Assert.Contains("signed by trusted key", check.Out, StringComparison.Ordinal);

        // Unsigned, signed by a key the device does not trust, altered after signing: refused, with the reason.
        var unsigned = Copy("unsigned.edgepkg");
        var foreign = Copy("foreign.edgepkg");
        Assert.Equal(0, Edgeml("model", "sign", foreign, "--key", Path.Combine(keys, "intruder.key")).Code);
        var altered = Path.Combine(_dir.Path, "altered.edgepkg");
        File.Copy(signed, altered);
        using (var zip = ZipFile.Open(altered, ZipArchiveMode.Update))
        {
            var entry = zip.GetEntry("manifest.json")!;
            string text;
            using (var r = new StreamReader(entry.Open())) text = r.ReadToEnd();
            entry.Delete();
            using var w = new StreamWriter(zip.CreateEntry("manifest.json").Open(), new UTF8Encoding(false));
            w.Write(text.Replace("\"version\": \"1.0.0\"", "\"version\": \"1.0.1\"", StringComparison.Ordinal));
        }

        foreach (var (package, reason) in new[] { (unsigned, "is not signed"), (foreign, "which is not trusted here"), (altered, "does not match the manifest") })
        {
            var verify = Edgeml("model", "verify", package, "--trust", trusted);
            Assert.Equal(1, verify.Code);
            Assert.Contains(reason, verify.Err, StringComparison.Ordinal);
            var agent = Agent("check-model", package, "--trust", trusted);
            Assert.Equal(1, agent.Code);
            Assert.Contains(reason, agent.Err, StringComparison.Ordinal);
        }

        // The service refuses to start on an untrusted package; with the trusted one it runs. (Keys from a directory of *.pub.)
        var trustDir = Path.Combine(_dir.Path, "trusted");
        Directory.CreateDirectory(trustDir);
        File.Copy(trusted, Path.Combine(trustDir, "ops.pub"));
        var run = Agent("run", "--model", foreign, "--sensor", "sim:vibration", "--count", "2", "--fast", "--quiet", $"--Agent:TrustedKeys:0={trustDir}");
        Assert.Equal(1, run.Code);
        Assert.Contains("refused", run.Err, StringComparison.Ordinal);
        Assert.Equal(0, Agent("run", "--model", signed, "--sensor", "sim:vibration", "--count", "2", "--fast", "--quiet", $"--Agent:TrustedKeys:0={trusted}").Code);
    }

    public void Dispose() => _dir.Dispose();
}
