using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using EdgeMl.FleetHub.Apis;
using EdgeMl.TestUtilities;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// The client's mistakes a real hub must answer with a 4xx and <c>{"error": …}</c> naming what was wrong: query values out
/// of range or malformed (never clamped or ignored), URLs and headers over the documented limits (not Kestrel's empty
/// answers), desired-state bounds; and <c>--config</c> files with keys that are not settings.
/// </summary>
public sealed class HubRequestLimitTests : IDisposable
{
    private readonly HubHarness _h = new();

    public void Dispose() => _h.Dispose();

    private static string Error(HttpResponseMessage r)
    {
        Assert.Equal("application/json", r.Content.Headers.ContentType?.MediaType);
        return HubHarness.Json(r).GetProperty("error").GetString()!;
    }

    [Fact]
    public async Task Malformed_or_out_of_range_query_values_are_refused_naming_the_parameter_and_its_range()
    {
        _h.StartHub();
        _h.Register("pump-1");
        var cases = new (string Url, string Named)[]
        {
            ("/api/devices/pump-1/telemetry?limit=-1", "limit '-1' is not a whole number from 1 to 10000"),
            ("/api/devices/pump-1/telemetry?limit=abc", "limit 'abc' is not a whole number from 1 to 10000"),
            ("/api/devices/pump-1/telemetry?limit=10000000", "limit '10000000' is not a whole number from 1 to 10000"),
            ("/api/devices/pump-1/telemetry?limit=0", "from 1 to 10000"),
            ("/api/devices/pump-1/telemetry?limit=5&limit=6", "limit is given 2 times"),
            ("/api/devices/pump-1/records?limit=1e3", "limit '1e3'"),
            ("/api/devices/pump-1/records?class=" + new string('x', 65), "class must be at most 64 characters"),
            ("/api/devices/pump-1/records?class=bogus", "class 'bogus' is not one of telemetry, health, drift, alert"),
            ("/api/devices?group=", "group is empty (leave it out for every device)"),
            ("/api/devices?model=@", "model '@' is not NAME or NAME@VERSION"),
            ("/api/devices?tag==", "tag '=' is not KEY or KEY=VALUE"),
            ("/api/devices?status=online&status=offline", "status is given 2 times"),
            ("/api/devices?group=%00", "group must be at most 256 characters without control characters"),
            ("/api/devices/pump-1/alerts?limit=%20", "limit ' '"),
            ("/api/ingest/quarantine?limit=1001", "limit '1001' is not a whole number from 1 to 1000"),
            ("/api/ingest/quarantine?limit=-5", "from 1 to 1000"),
            ("/api/drift/series?device=pump-1&buckets=abc", "buckets 'abc' is not a whole number from 1 to 96"),
            ("/api/drift/series?device=pump-1&buckets=0", "buckets '0'"),
            ("/api/drift?device=a&device=b", "device is given 2 times"),
            ("/api/audit?format=xml", "format 'xml' is not one of json, csv"),
            ("/api/audit?since=yesterday", "since 'yesterday' is not a time"),
            ("/api/audit?since=2026-13-45", "since '2026-13-45'"),
        };
        foreach (var (url, named) in cases)
        {
            var r = await _h.Api.GetAsync(url);
            Assert.True(r.StatusCode == HttpStatusCode.BadRequest, $"{url}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
            Assert.Contains(named, Error(r), StringComparison.Ordinal);
        }

        // The documented defaults and good values still work.
        foreach (var url in new[]
                 {
                     "/api/devices/pump-1/telemetry", "/api/devices/pump-1/telemetry?limit=10000", "/api/devices/pump-1/records?class=health&limit=1",
                     "/api/ingest/quarantine", "/api/ingest/quarantine?limit=1000", "/api/audit?format=csv", "/api/audit?since=2026-11-30",
                     "/api/audit?since=24h", "/api/drift/series?device=pump-1&buckets=96",
                 })
        {
            var r = await _h.Api.GetAsync(url);
            Assert.True(r.IsSuccessStatusCode, $"{url}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
        }
    }

    [Fact]
    public async Task Every_since_takes_the_same_times_and_one_in_the_future_is_a_time_not_a_malformed_value()
    {
        _h.StartHub();
        _h.Register("pump-1");
        // A list from a future time is empty (nothing happened after it yet); drift takes the times every other endpoint takes.
        foreach (var since in new[] { "2100-01-01", "2100-01-01T00:00:00Z", "2026-11-30", "24h" })
        {
            foreach (var url in new[]
                     {
                         "/api/devices/pump-1/presence", "/api/devices/pump-1/health", "/api/audit", "/api/drift", "/api/drift?device=pump-1",
                     })
            {
                var full = $"{url}{(url.Contains('?', StringComparison.Ordinal) ? '&' : '?')}since={since}";
                var r = await _h.Api.GetAsync(full);
                Assert.True(r.IsSuccessStatusCode, $"{full}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
            }
        }

        Assert.Equal(0, HubHarness.Json(await _h.Api.GetAsync("/api/devices/pump-1/health?since=2100-01-01")).GetArrayLength());

        // A series runs from since to until (default now): a since in the future is refused for that reason, named.
        foreach (var (url, named) in new[]
                 {
                     ("/api/devices/pump-1/health/series?since=2100-01-01", "since (2100-01-01T00:00:00.0000000+00:00) must be before until"),
                     ("/api/drift/series?device=pump-1&since=2100-01-01", "since (2100-01-01T00:00:00.0000000+00:00) must be before now"),
                     ("/api/drift/series?device=pump-1&since=2000-01-01", "is more than 400 days back"),
                     ("/api/drift?since=soon", "since 'soon' is not a time like 2026-11-30T06:00:00Z"),
                 })
        {
            var r = await _h.Api.GetAsync(url);
            Assert.True(r.StatusCode == HttpStatusCode.BadRequest, $"{url}: {(int)r.StatusCode}");
            Assert.Contains(named, Error(r), StringComparison.Ordinal);
        }

        var daysAgo = DateTimeOffset.UtcNow.AddDays(-3).ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
        Assert.True((await _h.Api.GetAsync($"/api/drift/series?device=pump-1&since={daysAgo}")).IsSuccessStatusCode);
    }

    [Theory]
    [InlineData("""{"model":"m@1","shadowSeconds":-1}""", "shadowSeconds -1 is not from 0 to 604800")]
    [InlineData("""{"model":"m@1","watchSeconds":-30}""", "watchSeconds -30 is not from 0 to 604800")]
    [InlineData("""{"model":"m@1","shadowSeconds":99999999}""", "shadowSeconds 99999999")]
    [InlineData("""{"model":"m@1","maxErrorRate":1.5}""", "maxErrorRate 1.5 is not from 0 to 1")]
    [InlineData("""{"model":"m@1","maxLatencyRatio":-2}""", "maxLatencyRatio -2 is not from 0")]
    public async Task Desired_state_bounds_out_of_range_are_refused_naming_the_field(string body, string named)
    {
        _h.StartHub();
        _h.Register("pump-1");
        var r = await _h.Api.PostAsync("/api/devices/pump-1/desired", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        Assert.Contains(named, Error(r), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Urls_and_headers_over_the_documented_limits_get_a_json_error_naming_the_limit()
    {
        _h.StartHub();
        var longUrl = await _h.Api.GetAsync("/api/fleet/summary?q=" + new string('a', RequestLimits.MaxUrlBytes));
        Assert.Equal(HttpStatusCode.RequestUriTooLong, longUrl.StatusCode);
        Assert.Contains($"at most {RequestLimits.MaxUrlBytes}", Error(longUrl), StringComparison.Ordinal);

        using (var many = new HttpRequestMessage(HttpMethod.Get, "/api/fleet/summary"))
        {
            for (var i = 0; i < RequestLimits.MaxHeaderCount + 10; i++) many.Headers.Add($"X-Filler-{i}", "1");
            var r = await _h.Api.SendAsync(many);
            Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, r.StatusCode);
            Assert.Contains($"at most {RequestLimits.MaxHeaderCount}", Error(r), StringComparison.Ordinal);
        }

        using (var big = new HttpRequestMessage(HttpMethod.Get, "/api/fleet/summary"))
        {
            big.Headers.Add("X-Filler", new string('b', RequestLimits.MaxHeaderBytes + 10));
            var r = await _h.Api.SendAsync(big);
            Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, r.StatusCode);
            Assert.Contains($"at most {RequestLimits.MaxHeaderBytes}", Error(r), StringComparison.Ordinal);
        }

        // What Kestrel alone can see (documented in docs/security.md): a request line that is not HTTP gets its empty 400 …
        using (var tcp = new TcpClient())
        {
            await tcp.ConnectAsync("127.0.0.1", _h.Http);
            var stream = tcp.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes("GARBAGE\r\n\r\n"));
            var buffer = new byte[4096];
            var n = await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.StartsWith("HTTP/1.1 400", Encoding.ASCII.GetString(buffer, 0, n), StringComparison.Ordinal);
        }

        // … and the hub keeps serving.
        Assert.True((await _h.Api.GetAsync("/api/fleet/summary")).IsSuccessStatusCode);
    }

    [Fact]
    public void A_config_file_with_a_key_that_is_no_setting_is_refused_naming_the_key()
    {
        var file = Path.Combine(_h.Dir.Path, "hub.json");
        File.WriteAllText(file, """
            { // comments are allowed
              "Data": "hub-data", "MqttPrt": 1884, "urls": "http://127.0.0.1:0", "RetentionDayz": 3 }
            """);
        var (code, _, err) = HubHarness.Run(Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll"), "--config", file);
        Assert.Equal(1, code);
        Assert.Equal($"edgeml-hub: --config: {file}: 'MqttPrt', 'RetentionDayz' are not a setting here (docs/fleet.md lists them)", err.Trim());

        (code, _, err) = HubHarness.Run(Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll"), "--config", _h.Dir.Path);
        Assert.Equal(1, code);
        Assert.Equal($"edgeml-hub: --config: '{_h.Dir.Path}' is a directory, not a JSON file (e.g. /etc/edgeml/hub.json)", err.Trim());

        // A setting of one value given as a section, and JSON that does not parse: named, with the reason.
        File.WriteAllText(file, """{ "Data": { "x": 1 } }""");
        (code, _, err) = HubHarness.Run(Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll"), "--config", file);
        Assert.Equal(1, code);
        Assert.Equal("edgeml-hub: --Data takes one value, not a section (Data:…)", err.Trim());
        File.WriteAllText(file, """{ "Data": "x",""");
        (code, _, err) = HubHarness.Run(Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll"), "--config", file);
        Assert.Equal(1, code);
        Assert.Contains("Could not parse the JSON file", err, StringComparison.Ordinal);
        Assert.Single(err.Trim().Split('\n'));
    }

    [Fact]
    public void The_hub_prints_its_help_and_refuses_a_command_line_word_that_is_no_setting()
    {
        var hub = Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll");
        var (code, output, _) = HubHarness.Run(hub, "--help");
        Assert.Equal(0, code);
        Assert.StartsWith("Usage: edgeml-hub", output, StringComparison.Ordinal);
        Assert.Contains("--MqttPort", output, StringComparison.Ordinal);
        Assert.Contains("--RetentionDays", output, StringComparison.Ordinal);

        string err;
        (code, _, err) = HubHarness.Run(hub, "--Data", _h.Dir.Path, "--MqttPrt", "1884");
        Assert.Equal(2, code);
        Assert.Equal("edgeml-hub: '--MqttPrt' is not a setting (edgeml-hub --help lists them; docs/fleet.md describes each)", err.Trim());

        (code, _, err) = HubHarness.Run(hub, "serve");
        Assert.Equal(2, code);
        Assert.Equal("edgeml-hub: 'serve' is not an option: settings are given as --Name value or --Name=value (edgeml-hub --help lists them)", err.Trim());

        (code, _, err) = HubHarness.Run(hub, "--RetentionDays");
        Assert.Equal(2, code);
        Assert.Equal("edgeml-hub: '--RetentionDays' needs a value", err.Trim());
    }

    [Fact]
    public void Every_key_of_the_packaged_hub_json_is_a_setting()
    {
        var text = File.ReadAllText(Path.Combine(TestPackages.RepositoryRoot, "packaging", "hub", "hub.json"));
        using var doc = JsonDocument.Parse(text, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip });
        var keys = doc.RootElement.EnumerateObject().Select(p => p.Name).ToList();
        Assert.NotEmpty(keys);
        Assert.All(keys, k => Assert.True(Hosting.HubHosting.IsSetting(k), $"{k} is in packaging/hub/hub.json but not a setting"));
        Assert.False(Hosting.HubHosting.IsSetting("MqttPrt"));
    }
}
