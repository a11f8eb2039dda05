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

    /// <summary>Publishes <paramref name="payload"/> on the device's telemetry topic as the device (mosquitto_pub, QoS 1: stored when it returns).</summary>
    private void PublishAsDevice(string device, string payload)
    {
        Assert.True(File.Exists("/usr/bin/mosquitto_pub"), "mosquitto-clients is needed (./build.sh test installs it)");
        var (code, _, err) = HubHarness.Run("/usr/bin/mosquitto_pub", "-p", HubHarness.Str(_h.Mqtt), "-i", device, "-u", device, "-P", _h.DevicePassword(device),
            "-t", $"edgeml/{device}/tele", "-m", payload, "-q", "1");
        Assert.True(code == 0, $"mosquitto_pub: {err}");
    }

    private static string Iso(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task Since_and_until_choose_telemetry_records_and_alerts_by_the_devices_own_time_newest_first()
    {
        _h.StartHub();
        _h.Enroll("field-1");
        // Two hours of the device's records, three hours ago: a prediction every 10 minutes (seq 1-12) and a rule that
        // switches on, off and on again (alert records seq 1-3, which raise and clear fleet alerts at the device's time).
        var start = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.AddHours(-3).ToUnixTimeSeconds() / 60 * 60);
        long Ms(int minutes) => start.AddMinutes(minutes).ToUnixTimeMilliseconds();
        const string Prediction = """{"seq":1,"t":0.5,"model":"m@1","label":"healthy","score":0.9,"probs":{"healthy":0.9},"latency_ms":0.2}""";
        var records = Enumerable.Range(0, 12).Select(i => $$"""{"boot":"b1","seq":{{i + 1}},"class":"telemetry","at":{{Ms(10 * i)}},"data":{{Prediction}}}""")
            .Concat(new[] { (5, "on"), (65, "off"), (125, "on") }.Select((x, i) =>
                $$$"""{"boot":"b1","seq":{{{i + 1}}},"class":"alert","at":{{{Ms(x.Item1)}}},"data":{"kind":"rule","rule":"hot","state":"{{{x.Item2}}}"}}"""));
        PublishAsDevice("field-1", $$"""{"device":"field-1","records":[{{string.Join(',', records)}}]}""");
        HubHarness.Until(() => _h.Records("field-1") >= 15, "field-1's 15 records");

        List<(string Class, long Seq, long At)> Get(string path) =>
            _h.Get(path).EnumerateArray().Select(r => (r.GetProperty("class").GetString()!, r.GetProperty("seq").GetInt64(), r.GetProperty("at").GetInt64())).ToList();
        List<(string, long, long)> Telemetry(params int[] seqs) => seqs.Select(q => ("telemetry", (long)q, Ms(10 * (q - 1)))).ToList();

        var (from, until) = (Iso(start.AddMinutes(30)), Iso(start.AddMinutes(90)));
        Assert.Equal(Telemetry(9, 8, 7, 6, 5, 4), Get($"/api/devices/field-1/telemetry?since={from}&until={until}")); // 30 ≤ at < 90
        Assert.Equal(Telemetry(9, 8), Get($"/api/devices/field-1/telemetry?since={from}&until={until}&limit=2"));
        Assert.Equal(Telemetry(12, 11, 10, 9, 8, 7, 6, 5, 4), Get($"/api/devices/field-1/telemetry?since={from}"));
        Assert.Equal(Telemetry(3, 2, 1), Get($"/api/devices/field-1/telemetry?until={from}"));
        Assert.Equal(Telemetry(12, 11), Get($"/api/devices/field-1/telemetry?since=24h&limit=2")); // a duration back from now, as everywhere
        Assert.Equal(12, Get("/api/devices/field-1/telemetry").Count); // without a range: the newest, as before
        // Every class at once (records without class=), or one; and the device's alert records.
        Assert.Equal([("telemetry", 9L, Ms(80)), ("telemetry", 8L, Ms(70)), ("alert", 2L, Ms(65)), ("telemetry", 7L, Ms(60))],
            Get($"/api/devices/field-1/records?since={Iso(start.AddMinutes(60))}&until={until}"));
        Assert.Equal([("alert", 3L, Ms(125)), ("alert", 2L, Ms(65))], Get($"/api/devices/field-1/records?class=alert&since={Iso(start.AddMinutes(60))}"));
        Assert.Equal([("alert", 2L, Ms(65)), ("alert", 1L, Ms(5))], Get($"/api/devices/field-1/alerts?until={Iso(start.AddMinutes(125))}"));

        // The same from the command line: edgeml devices records, a table newest first, times in UTC.
        var (code, stdout, stderr) = HubHarness.Run(HubHarness.CliDll, "devices", "records", "field-1", "--since", from, "--until", until, "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.StartsWith("AT (UTC)", lines[0], StringComparison.Ordinal);
        Assert.Equal(7, lines.Length - 2); // 6 predictions and the rule switching off at 65
        Assert.StartsWith($"{start.AddMinutes(80):yyyy-MM-dd HH:mm:ss.fff}  telemetry  b1    9", lines[1], StringComparison.Ordinal);
        Assert.Contains("alert", lines[3], StringComparison.Ordinal);
        Assert.Equal("7 record(s) of field-1", lines[^1]);
        (code, stdout, stderr) = HubHarness.Run(HubHarness.CliDll, "devices", "records", "field-1", "--class", "alert", "--since", "24h", "--limit", "1", "--json", "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        Assert.True(code == 0, stderr);
        Assert.Equal(3, System.Text.Json.JsonDocument.Parse(stdout).RootElement.EnumerateArray().Single().GetProperty("seq").GetInt64());
        (code, _, stderr) = HubHarness.Run(HubHarness.CliDll, "devices", "records", "field-1", "--since", until, "--until", from, "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        Assert.Equal(1, code);
        Assert.Contains("must be before until", stderr, StringComparison.Ordinal);
        Assert.Equal(2, HubHarness.Run(HubHarness.CliDll, "devices", "records", "field-1", "--until", "soon", "--hub", _h.HubUrl).Code);

        // The fleet's alert list: raised at or after since.
        HubHarness.Until(() => _h.Get("/api/alerts?kind=rule&device=field-1").GetArrayLength() == 2, "the two rule alerts");
        var raised = _h.Get($"/api/alerts?kind=rule&device=field-1&since={Iso(start.AddMinutes(60))}").EnumerateArray().Select(a => a.GetProperty("raisedAt").GetDateTimeOffset()).ToList();
        Assert.Equal([start.AddMinutes(125)], raised);
        Assert.Equal(2, _h.Get($"/api/alerts?kind=rule&since={Iso(start)}").GetArrayLength());

        // since not before until: a 400 naming both; a malformed time: a 400 naming it, on each call.
        foreach (var call in new[] { "telemetry", "records", "alerts" })
        {
            var r = await _h.Api.GetAsync($"/api/devices/field-1/{call}?since={until}&until={from}");
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Equal($"since ({start.AddMinutes(90):O}) must be before until ({start.AddMinutes(30):O})", Error(r));
            Assert.Equal(HttpStatusCode.BadRequest, (await _h.Api.GetAsync($"/api/devices/field-1/{call}?since={from}&until={from}")).StatusCode);
            r = await _h.Api.GetAsync($"/api/devices/field-1/{call}?until=06:00");
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.StartsWith("until '06:00' is not a time like 2026-11-30T06:00:00Z", Error(r), StringComparison.Ordinal);
        }

        var since = await _h.Api.GetAsync("/api/alerts?since=yesterday");
        Assert.Equal(HttpStatusCode.BadRequest, since.StatusCode);
        Assert.StartsWith("since 'yesterday' is not a time", Error(since), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await _h.Api.GetAsync($"/api/devices/nobody/telemetry?since={from}")).StatusCode);
    }

    [Fact]
    public async Task A_query_parameter_the_endpoint_does_not_take_is_a_400_naming_it_and_the_ones_it_takes()
    {
        _h.StartHub();
        _h.Register("pump-1", "line-a");
        foreach (var (url, error) in new[]
                 {
                     ("/api/devices/pump-1/telemetry?sinse=2026-11-30T06:00:00Z", "unknown query parameter 'sinse' (this endpoint takes: limit, since, until)"),
                     ("/api/devices/pump-1/records?limit=5&from=6h", "unknown query parameter 'from' (this endpoint takes: class, limit, since, until)"),
                     ("/api/devices/pump-1/alerts?x=1&x=2", "unknown query parameter 'x' (this endpoint takes: limit, since, until)"),
                     ("/api/alerts?until=1h", "unknown query parameter 'until' (this endpoint takes: active, kind, device, since, limit)"),
                     ("/api/devices?group=line-a&groups=b", "unknown query parameter 'groups' (this endpoint takes: group, status, model, tag)"),
                     ("/api/devices/page?size=5&order=id", "unknown query parameters 'size', 'order' (this endpoint takes: q, group, status, model, tag, drift, sort, page, pageSize)"),
                     ("/api/fleet/summary?group=line-a", "unknown query parameter 'group' (this endpoint takes no query parameters)"),
                     ("/api/devices/pump-1?verbose", "unknown query parameter 'verbose' (this endpoint takes no query parameters)"),
                     ("/api/audit?rollout=r-1", "unknown query parameter 'rollout' (this endpoint takes: since, action, device, subject, format)"),
                     ("/api/drift?device=pump-1&since=1h&window=5m", "unknown query parameter 'window' (this endpoint takes: device, group, since)"),
                     ("/api/devices/pump-1/health?sample=1%00", "unknown query parameter 'sample' (this endpoint takes: limit, since, until)"),
                     ("/api/devices/pump-1/health?%00=1", "unknown query parameter '?' (this endpoint takes: limit, since, until)"),
                 })
        {
            var r = await _h.Api.GetAsync(url);
            Assert.True(r.StatusCode == HttpStatusCode.BadRequest, $"{url}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
            Assert.Equal(error, Error(r));
        }

        // A change with a parameter it does not take changes nothing.
        var post = await _h.Api.PostAsJsonAsync("/api/devices?dryRun=true", new { id = "pump-2" });
        Assert.Equal(HttpStatusCode.BadRequest, post.StatusCode);
        Assert.Equal("unknown query parameter 'dryRun' (this endpoint takes no query parameters)", Error(post));
        Assert.Equal(HttpStatusCode.NotFound, (await _h.Api.GetAsync("/api/devices/pump-2")).StatusCode);

        // Names match in any case, as the endpoints read them; a known one given twice stays the 400 it was.
        Assert.Equal(HttpStatusCode.OK, (await _h.Api.GetAsync("/api/devices/pump-1/telemetry?LIMIT=5&Since=1h")).StatusCode);
        var twice = await _h.Api.GetAsync("/api/devices/pump-1/telemetry?limit=5&limit=6");
        Assert.Equal("limit is given 2 times; give it once", Error(twice));

        // Who may not call the endpoint gets that answer first; a route that does not exist or a wrong method stays 404 / 405.
        using var anonymous = new HttpClient { BaseAddress = _h.Api.BaseAddress };
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/api/devices?sinse=1h")).StatusCode);
        var viewerToken = HubHarness.Json(await _h.Api.PostAsJsonAsync("/api/tokens", new { role = "viewer", name = "v" })).GetProperty("token").GetString()!;
        using var viewer = new HttpClient { BaseAddress = _h.Api.BaseAddress };
        viewer.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", viewerToken);
        Assert.Equal(HttpStatusCode.Forbidden, (await viewer.PostAsJsonAsync("/api/tokens?x=1", new { role = "operator", name = "w" })).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await viewer.GetAsync("/api/devices?x=1")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _h.Api.GetAsync("/api/no-such-thing?x=1")).StatusCode);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, (await _h.Api.DeleteAsync("/api/fleet/summary?x=1")).StatusCode);

        // What the edgeml CLI sends is all taken: the commands that filter by time and the others.
        foreach (var args in new[]
                 {
                     new[] { "audit", "--since", "1h", "--action", "model.push", "--device", "pump-1", "--rollout", "r-1" }, ["audit", "--since", "2026-11-30T06:00:00Z", "--csv"],
                     ["drift", "show", "--device", "pump-1", "--since", "6h"], ["drift", "show", "--group", "line-a"],
                     ["devices", "list", "--group", "line-a", "--status", "pending", "--model", "m", "--tag", "site"],
                 })
        {
            var (code, _, err) = HubHarness.Run(HubHarness.CliDll, [.. args, "--hub", _h.HubUrl, "--token", _h.OperatorToken]);
            Assert.True(code == 0, $"edgeml {string.Join(' ', args)}: {err}");
        }
    }

    public void Dispose() => _h.Dispose();
}
