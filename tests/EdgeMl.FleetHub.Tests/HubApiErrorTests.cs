using System.Diagnostics;
using System.Net;
using System.Text;

namespace EdgeMl.FleetHub.Tests;

/// <summary>The API answers a client's mistake with a 4xx and a JSON error naming what was wrong; limits match and are named.</summary>
public sealed class HubApiErrorTests : IDisposable
{
    private readonly HubHarness _h = new();

    private static string Error(HttpResponseMessage r) => HubHarness.Json(r).GetProperty("error").GetString()!;

    [Fact]
    public async Task Mistakes_in_queries_bodies_and_routes_are_4xx_with_a_json_error()
    {
        _h.StartHub();
        foreach (var since in new[] { "1e300d", "-5h", "abc", "99999999999s", "NaNh" })
        {
            var r = await _h.Api.GetAsync($"/api/drift?since={Uri.EscapeDataString(since)}");
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Contains("since", Error(r), StringComparison.Ordinal);
        }

        var malformed = await _h.Api.PostAsync("/api/devices", new StringContent("{\"id\": ", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, malformed.StatusCode);
        Assert.StartsWith("bad request", Error(malformed), StringComparison.Ordinal);

        var wrongType = await _h.Api.PostAsync("/api/devices", new StringContent("{\"id\": 42}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, wrongType.StatusCode);
        Assert.NotEmpty(Error(wrongType));

        var route = await _h.Api.GetAsync("/api/no-such-thing");
        Assert.Equal(HttpStatusCode.NotFound, route.StatusCode);
        Assert.Contains("/api/no-such-thing", Error(route), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_push_over_the_package_limit_is_refused_by_the_api_and_by_the_cli_before_it_uploads_naming_the_limit()
    {
        var keys = Path.Combine(_h.Dir.Path, "keys");
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "keys", "create", "ops", "--dir", keys).Code);
        _h.StartHub(null, "--TrustedKeys:0", Path.Combine(keys, "ops.pub"), "--MaxPackageMb", "1");

        var body = new ByteArrayContent(new byte[3 << 20]);
        body.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/zip");
        var r = await _h.Api.PostAsync("/api/models", body);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, r.StatusCode);
        Assert.Contains("1 MB", Error(r), StringComparison.Ordinal);

        // A valid, signed package made big by a stored entry nobody reads.
        var package = _h.SignedVariant("2.0.0", Path.Combine(keys, "ops.key"));
        using (var zip = System.IO.Compression.ZipFile.Open(package, System.IO.Compression.ZipArchiveMode.Update))
        {
            using var padding = zip.CreateEntry("padding.bin", System.IO.Compression.CompressionLevel.NoCompression).Open();
            padding.Write(System.Security.Cryptography.RandomNumberGenerator.GetBytes(2 << 20));
        }

        var (code, _, err) = HubHarness.Run(HubHarness.CliDll, "model", "push", package, "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        Assert.Equal(1, code);
        Assert.Contains("accepts packages up to 1 MB", err, StringComparison.Ordinal);
        Assert.DoesNotContain("pushing", err, StringComparison.Ordinal); // refused before the upload started
        Assert.Equal(0, _h.Get("/api/models").GetArrayLength());
    }

    [Fact]
    public void A_corrupt_login_file_is_one_line_naming_the_file_for_every_command()
    {
        var config = Path.Combine(_h.Dir.Path, "config");
        Directory.CreateDirectory(Path.Combine(config, "edgeml"));
        File.WriteAllText(Path.Combine(config, "edgeml", "login.json"), "{bad");
        var psi = new ProcessStartInfo("dotnet", [HubHarness.CliDll, "devices", "list"]) { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.Environment["XDG_CONFIG_HOME"] = config;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(30_000));
        Assert.Equal(1, p.ExitCode);
        Assert.Contains("login.json", err, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", err, StringComparison.Ordinal);
        Assert.Single(err.Trim().Split('\n'));
    }

    public void Dispose() => _h.Dispose();
}
