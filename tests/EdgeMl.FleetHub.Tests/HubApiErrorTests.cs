using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using EdgeMl.TestUtilities;

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

    /// <summary>What a hostile tester sent that came back as a 500 before: now each is a 400 naming the field.</summary>
    [Fact]
    public async Task Hostile_rollout_and_enrollment_bodies_are_400_not_500()
    {
        _h.StartHub();
        foreach (var (path, body, named) in new[]
                 {
                     ("/api/rollouts", """{"model":"m@1.0.0","group":"g","waves":"NaN%"}""", "NaN"),
                     ("/api/rollouts", """{"model":"m@1.0.0","group":"g","gates":[null,"x"]}""", "gates"),
                     ("/api/rollouts", """{"model":"m@1.0.0","devices":[null]}""", "devices"),
                     ("/api/devices", """{"id":"p1","group":"g\u0000x"}""", "group"),
                     ("/api/devices", """{"id":"p2","group":"a/b/#/+"}""", "group"),
                     ("/api/devices", $$"""{"id":"p3","group":"{{new string('g', 100_000)}}"}""", "group"),
                     ("/api/devices", """{"id":"p4","tags":{"k\u0000":"v"}}""", "tag"),
                     ("/api/tokens", """{"role":"viewer","name":"a\u0000b"}""", "control"),
                 })
        {
            var r = await _h.Api.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
            Assert.True(r.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.NotFound, $"{path} {body[..Math.Min(80, body.Length)]} → {(int)r.StatusCode}");
            if (r.StatusCode == HttpStatusCode.BadRequest) Assert.Contains(named, Error(r), StringComparison.Ordinal);
        }

        var many = new Dictionary<string, string>();
        for (var i = 0; i < 100; i++) many[$"k{i}"] = "v";
        var tags = await _h.Api.PostAsJsonAsync("/api/devices", new { id = "p5", tags = many });
        Assert.Equal(HttpStatusCode.BadRequest, tags.StatusCode);
    }

    [Fact]
    public async Task A_body_that_gives_a_key_twice_or_a_null_tag_value_is_a_400_naming_the_key()
    {
        _h.StartHub();
        foreach (var (path, body, named) in new[]
                 {
                     ("/api/devices", """{"id":"d1","id":"d2"}""", "'id'"),
                     ("/api/devices", """{"id":"d1","Id":"d2"}""", "'Id' twice (at $.Id)"),
                     ("/api/devices", """{"id":"d1","tags":{"k":"a","k":"b"}}""", "'k' twice (at $.tags.k)"),
                     ("/api/devices/d1/desired", """{"model":"m@1.0.0","model":"n@1.0.0"}""", "'model'"),
                     ("/api/rollouts", """{"model":"m@1.0.0","group":"g","group":"h"}""", "'group'"),
                     ("/api/tokens", """{"role":"viewer","role":"operator","name":"x"}""", "'role'"),
                     ("/api/enroll", """{"token":"enr_a","token":"enr_b"}""", "'token'"),
                     ("/api/session", """{"token":"a","token":"b"}""", "'token'"),
                     ("/api/devices", """{"id":"d1","tags":{"a b":"1","a b":"2"}}""", "'a b' twice"),
                 })
        {
            var r = await _h.Api.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
            Assert.True(r.StatusCode == HttpStatusCode.BadRequest, $"{path} {body} → {(int)r.StatusCode}");
            var error = Error(r);
            Assert.True(error.Contains("twice", StringComparison.Ordinal) && error.Contains(named, StringComparison.Ordinal), $"{path} {body} → {error}");
        }

        Assert.Equal(HttpStatusCode.NotFound, (await _h.Api.GetAsync("/api/devices/d1")).StatusCode); // nothing was enrolled

        // No body, and a body that is not JSON: said in the API's words (the bodies reach ApiErrors in every environment).
        var empty = await _h.Api.PostAsync("/api/devices", new StringContent("", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, empty.StatusCode);
        Assert.Equal("bad request: this call needs a JSON body (Content-Type: application/json)", Error(empty));
        var text = await _h.Api.PostAsync("/api/devices", new StringContent("id=d1", Encoding.UTF8, "text/plain"));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, text.StatusCode);
        Assert.Equal("the body must be JSON (Content-Type: application/json)", Error(text));

        var nullTag = await _h.Api.PostAsync("/api/devices", new StringContent("""{"id":"d1","tags":{"k":null}}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, nullTag.StatusCode);
        Assert.Equal("tags.k is null: a tag's value is a string (\"\" for a tag without a value)", Error(nullTag));
    }

    /// <summary>A package whose manifest holds nulls: 400 naming the field, and the signature is checked before the manifest is parsed.</summary>
    [Fact]
    public async Task A_pushed_package_with_null_manifest_fields_is_a_400_and_an_unsigned_one_is_refused_before_parsing()
    {
        var keys = Path.Combine(_h.Dir.Path, "keys");
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "keys", "create", "ops", "--dir", keys).Code);
        _h.StartHub(null, "--TrustedKeys:0", Path.Combine(keys, "ops.pub"));
        foreach (var (edit, named) in new (Func<System.Text.Json.Nodes.JsonObject, System.Text.Json.Nodes.JsonObject>, string)[]
                 {
                     (m => { m["constants"] = null; return m; }, "constants"),
                     (m => { m["inputs"]!.AsArray().Add(null); return m; }, "inputs[1] is null"),
                     (m => { m["outputs"]![0]!["shape"] = null; return m; }, "shape"),
                 })
        {
            var package = Path.Combine(_h.Dir.Path, $"null-{named.Length}.edgepkg");
            File.Copy(TestPackages.VibrationInt8, package, overwrite: true);
            using (var zip = System.IO.Compression.ZipFile.Open(package, System.IO.Compression.ZipArchiveMode.Update))
            {
                var entry = zip.GetEntry("manifest.json")!;
                System.Text.Json.Nodes.JsonObject manifest;
                using (var read = entry.Open()) manifest = System.Text.Json.Nodes.JsonNode.Parse(read)!.AsObject();
                entry.Delete();
                zip.GetEntry("manifest.sig")?.Delete();
                using var write = new StreamWriter(zip.CreateEntry("manifest.json").Open());
                write.Write(edit(manifest).ToJsonString());
            }

            // Signed the way `edgeml model sign` signs (which itself refuses such a manifest): over the raw manifest bytes.
            var signedPackage = package.Replace(".edgepkg", "-signed.edgepkg", StringComparison.Ordinal);
            File.Copy(package, signedPackage, overwrite: true);
            using (var zip = System.IO.Compression.ZipFile.Open(signedPackage, System.IO.Compression.ZipArchiveMode.Update))
            {
                byte[] manifestBytes;
                using (var read = zip.GetEntry("manifest.json")!.Open())
                using (var ms = new MemoryStream())
                {
                    read.CopyTo(ms);
                    manifestBytes = ms.ToArray();
                }

                using var key = System.Security.Cryptography.ECDsa.Create();
                key.ImportFromPem(File.ReadAllText(Path.Combine(keys, "ops.key")));
                using var sig = zip.CreateEntry("manifest.sig").Open();
                sig.Write(EdgeMl.Protocol.Packages.PackageSignature.Sign(manifestBytes, key));
            }

            // Unsigned: refused for that, whatever the manifest holds.
            var unsigned = await _h.Api.PostAsync("/api/models", new ByteArrayContent(await File.ReadAllBytesAsync(package)));
            Assert.Equal(HttpStatusCode.BadRequest, unsigned.StatusCode);
            Assert.Contains("not signed", Error(unsigned), StringComparison.Ordinal);

            var signed = await _h.Api.PostAsync("/api/models", new ByteArrayContent(await File.ReadAllBytesAsync(signedPackage)));
            Assert.Equal(HttpStatusCode.BadRequest, signed.StatusCode);
            Assert.Contains(named, Error(signed), StringComparison.Ordinal);
        }
    }

    /// <summary><c>edgeml-agent enroll</c> checks what it can before it spends the one-time token.</summary>
    [Fact]
    public void Enroll_with_an_unusable_data_directory_broker_or_ca_fails_before_the_token_is_spent()
    {
        _h.StartHub();
        var token = _h.Register("late-1");
        var notPem = Path.Combine(_h.Dir.Path, "not.pem");
        File.WriteAllText(notPem, "hello");
        foreach (var (extra, named) in new[]
                 {
                     (new[] { "--data", "/dev/null" }, "--data"),
                     (["--data", _h.AgentData("late-1"), "--broker", "http://x"], "--broker"),
                     (["--data", _h.AgentData("late-1"), "--ca", notPem], "--ca"),
                 })
        {
            var (code, _, err) = HubHarness.Run(HubHarness.AgentDll, ["enroll", "--hub", _h.HubUrl, "--token", token, .. extra]);
            Assert.Equal(1, code);
            Assert.Contains(named, err, StringComparison.Ordinal);
        }

        var ok = HubHarness.Run(HubHarness.AgentDll, "enroll", "--hub", _h.HubUrl, "--token", token, "--data", _h.AgentData("late-1"));
        Assert.True(ok.Code == 0, ok.Err); // the token still works
    }

    /// <summary>The CLI pointed at something that is not a hub says so in one line; <c>login</c> saves nothing.</summary>
    [Fact]
    public async Task The_cli_against_a_server_that_is_not_a_hub_says_so_and_login_saves_nothing()
    {
        using var listener = new System.Net.HttpListener();
        var port = EdgeMl.TestUtilities.Mqtt.Mosquitto.FreePort();
        listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        listener.Start();
        using var cts = new CancellationTokenSource();
        var serve = Task.Run(async () =>
        {
            while (!cts.IsCancellationRequested)
            {
                System.Net.HttpListenerContext c;
                try
                {
                    c = await listener.GetContextAsync();
                }
                catch (Exception) when (cts.IsCancellationRequested)
                {
                    return;
                }

                var html = c.Request.Url!.AbsolutePath == "/api/devices" && c.Request.Headers["Authorization"] == "Bearer array" ? "[1,2,3]"u8.ToArray() : "<html>router login</html>"u8.ToArray();
                c.Response.ContentType = "text/html";
                await c.Response.OutputStream.WriteAsync(html);
                c.Response.Close();
            }
        });

        var config = Path.Combine(_h.Dir.Path, "config");
        foreach (var (args, expected) in new (string[], string)[]
                 {
                     (["devices", "list", "--hub", $"127.0.0.1:{port}", "--token", "t"], "did not answer like an EdgeMl hub"),
                     (["login", "--hub", $"127.0.0.1:{port}", "--token", "t"], "did not answer like an EdgeMl hub"),
                     (["login", "--hub", $"127.0.0.1:{port}", "--token", "array"], "nothing saved"),
                 })
        {
            var psi = new ProcessStartInfo("dotnet", [HubHarness.CliDll, .. args]) { RedirectStandardError = true, RedirectStandardOutput = true };
            psi.Environment["XDG_CONFIG_HOME"] = config;
            using var p = Process.Start(psi)!;
            var err = await p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync();
            Assert.True(p.ExitCode == 1, $"{string.Join(' ', args)} → {p.ExitCode}: {err}");
            Assert.Contains(expected, Assert.Single(err.Trim().Split('\n')), StringComparison.Ordinal);
        }

        Assert.False(File.Exists(Path.Combine(config, "edgeml", "login.json")), "login saved nothing");
        cts.Cancel();
        listener.Stop();
        await serve;
    }

    public void Dispose() => _h.Dispose();
}
