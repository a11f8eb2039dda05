using System.Net;
using EdgeMl.TestUtilities.Mqtt;
using EdgeMl.TestUtilities.Prometheus;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// <c>GET /metrics</c> on a real hub while real agents and a third-party MQTT client send: every scrape is valid
/// Prometheus text (a strict parser here, and promtool where it is available), and the counters move by exactly what
/// was sent.
/// </summary>
public sealed class HubMetricsTests : IDisposable
{
    private readonly HubHarness _h = new();
    private readonly int _metricsPort = Mosquitto.FreePort();
    private readonly HttpClient _scraper = new();

    private string ScrapeText()
    {
        var response = _scraper.GetAsync($"http://127.0.0.1:{_metricsPort}/metrics").Result;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
        return response.Content.ReadAsStringAsync().Result;
    }

    private PrometheusText Scrape() => PrometheusText.Parse(ScrapeText());

    private static string Record(long seq, string data) =>
        $$"""{"boot":"b1","seq":{{seq}},"class":"telemetry","at":{{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}},"data":{{data}}}""";

    private const string Prediction = """{"seq":1,"t":0.5,"model":"m@1","label":"healthy","score":0.9,"probs":{"healthy":0.9},"latency_ms":0.2}""";

    private void Pub(string device, string payload)
    {
        var (code, _, err) = HubHarness.Run("/usr/bin/mosquitto_pub", "-p", HubHarness.Str(_h.Mqtt), "-i", device, "-u", device, "-P", _h.DevicePassword(device),
            "-t", $"edgeml/{device}/tele", "-m", payload, "-q", "1");
        Assert.True(code == 0, $"mosquitto_pub: {err}");
    }

    [Fact]
    public async Task Metrics_scraped_during_ingest_are_valid_and_count_exactly_what_devices_sent()
    {
        Assert.True(File.Exists("/usr/bin/mosquitto_pub"), "mosquitto-clients is needed (./build.sh test installs it)");
        _h.StartHub(null, "--MetricsPort", HubHarness.Str(_metricsPort), "--MetricsSampleSeconds", "0");
        _h.Enroll("meter-1");
        var before = Scrape();
        Assert.Equal("counter", before.Types["edgeml_ingest_records_stored_total"]);
        Assert.Equal("histogram", before.Types.GetValueOrDefault("http_server_request_duration_seconds"));

        // Real agents, scraped again and again while they send: every scrape parses, and no counter goes back.
        const int Predictions = 40;
        var agents = new[] { "meter-a", "meter-b" }.Select(d => _h.Agent(d, Predictions, fast: false)).ToList();
        var last = before;
        var scrapes = 0;
        var finished = Task.WhenAll(agents.Select(a => a.WaitForExitAsync()));
        var deadline = Environment.TickCount64 + 120_000;
        while (!finished.IsCompleted || scrapes < 3)
        {
            Assert.True(Environment.TickCount64 < deadline, "the agents did not finish in 120 s");
            var now = Scrape();
            foreach (var counter in now.Types.Where(t => t.Value == "counter").Select(t => t.Key))
            {
                foreach (var s in now.Samples.Where(s => s.Name == counter))
                {
                    var was = last.Samples.FirstOrDefault(p => p.Name == s.Name && p.Labels.SequenceEqual(s.Labels))?.Value ?? 0;
                    Assert.True(s.Value >= was, $"{counter} went back from {was} to {s.Value}");
                }
            }

            last = now;
            scrapes++;
            await Task.WhenAny(finished, Task.Delay(250)); // the next scrape when an agent finishes, or in a quarter of a second (Prometheus would wait 15 s)
        }

        Assert.True(scrapes >= 3, $"only {scrapes} scrapes during ingest");

        foreach (var a in agents)
        {
            Assert.True(a.WaitForExit(60_000));
            Assert.Equal(0, a.ExitCode);
        }

        // Each agent: its predictions and the drift monitor's last window (HubIngestTests pins that count).
        var fromAgents = 2 * (Predictions + 1);
        HubHarness.Until(() => Scrape().Value("edgeml_ingest_records_stored_total") - before.Value("edgeml_ingest_records_stored_total") >= fromAgents,
            "the agents' records in edgeml_ingest_records_stored_total");

        // A third-party client as device meter-1: 3 good records and 1 malformed (a string where the score's number belongs),
        // then the same batch again (a re-send after a lost PUBACK: 3 duplicates, the bad record malformed again).
        var batch = $$"""{"device":"meter-1","records":[{{Record(1, Prediction)}},{{Record(2, """{"score":"high"}""")}},{{Record(3, Prediction)}},{{Record(4, Prediction)}}]}""";
        Pub("meter-1", batch);
        Pub("meter-1", batch);
        Pub("meter-1", "{not json");

        var after = Scrape();
        double Delta(string name, params (string, string)[] labels) => after.Value(name, labels) - before.Value(name, labels);
        Assert.Equal(fromAgents + 3, Delta("edgeml_ingest_records_stored_total"));
        Assert.Equal(3, Delta("edgeml_ingest_records_duplicate_total"));
        Assert.Equal(fromAgents + 6, Delta("edgeml_ingest_records_received_total"));
        Assert.Equal(2, Delta("edgeml_ingest_records_malformed_total", ("reason", "data")));
        Assert.Equal(1, Delta("edgeml_ingest_records_malformed_total", ("reason", "json")));
        Assert.Equal(_h.Get("/api/ingest").GetProperty("malformed").GetInt64(), after.Sum("edgeml_ingest_records_malformed_total")); // the same numbers as the API
        Assert.Equal(0, after.Value("edgeml_ingest_batches_quarantined_total"));

        // Commit latency: one observation per group commit, in seconds (a LiteDB commit here is far below 10 s).
        var commits = after.Value("edgeml_ingest_commit_duration_seconds_count");
        Assert.True(commits >= 1 && commits <= after.Value("edgeml_ingest_commits_total"), $"{commits} commit observations, {after.Value("edgeml_ingest_commits_total")} commits");
        Assert.Equal(commits, after.Value("edgeml_ingest_commit_duration_seconds_bucket", ("le", "10")));

        // Fleet gauges: three enrolled devices; the agents said goodbye (offline), the third-party client never sent a status but
        // the hub heard its records, so it is offline too (as in the fleet table), not never seen.
        HubHarness.Until(() => Scrape() is var s && s.Value("edgeml_devices", ("presence", "offline")) == 3 && s.Value("edgeml_devices_connected") == 0,
            "the agents offline and no device connected");
        after = Scrape();
        Assert.Equal(3, after.Sum("edgeml_devices"));
        Assert.Equal((0.0, 0.0), (after.Value("edgeml_devices", ("presence", "neverSeen")), after.Value("edgeml_devices", ("presence", "online"))));
        Assert.DoesNotContain(after.Samples, s => s.Name == "edgeml_devices" && s.Label("presence") == "unknown");
        Assert.Equal(3, after.Sum("edgeml_devices_drift"));
        Assert.True(after.Value("edgeml_store_size_bytes") > before.Value("edgeml_store_size_bytes"), "the store grew");
        Assert.Equal(0, after.Sum("edgeml_rollouts"));
        // API durations under their route, never a device id: no series of the hub carries one.
        _h.Device("meter-1");
        after = Scrape();
        Assert.Contains(after.Samples, s => s.Name == "http_server_request_duration_seconds_count" && s.Label("http_route") == "/api/devices/{id}");
        foreach (var s in after.Samples)
        {
            Assert.DoesNotContain(s.Labels.Values, v => v.Contains("meter-", StringComparison.Ordinal));
        }

        // The dashboard and the series table of docs/metrics.md name only series this hub exposes.
        var root = EdgeMl.TestUtilities.TestPackages.RepositoryRoot;
        using (var dashboard = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "docs", "grafana-hub.json"))))
        {
            // Grafana 10's model: the Prometheus data source is a variable every panel uses.
            Assert.Contains(dashboard.RootElement.GetProperty("templating").GetProperty("list").EnumerateArray(),
                v => v.GetProperty("type").GetString() == "datasource" && v.GetProperty("query").GetString() == "prometheus");
            Assert.All(dashboard.RootElement.GetProperty("panels").EnumerateArray().Where(p => p.GetProperty("type").GetString() != "row"),
                p => Assert.Equal("${datasource}", p.GetProperty("datasource").GetProperty("uid").GetString()));
        }

        foreach (var (file, text) in new[] { "grafana-hub.json", "metrics.md" }.Select(f => (f, File.ReadAllText(Path.Combine(root, "docs", f)))))
        {
            var names = System.Text.RegularExpressions.Regex.Matches(text, @"\b(edgeml_(?!agent_)[a-z_]+|http_server_[a-z_]+)").Select(m => m.Value).Distinct().ToList();
            Assert.NotEmpty(names);
            foreach (var name in names)
            {
                Assert.True(after.Samples.Any(s => s.Name == name || s.Name == name + "_bucket"), $"docs/{file} names {name}, which /metrics does not have");
            }
        }

        if (Promtool.Path is not null)
        {
            var (code, output) = Promtool.CheckMetrics(ScrapeText());
            Assert.True(code == 0 && output.Trim().Length == 0, $"promtool check metrics: {output}");
        }
        else
        {
            Assert.NotEqual("1", Environment.GetEnvironmentVariable("EDGEML_REQUIRE_PUBLISHED")); // ./build.sh test provides promtool
        }
    }

    [Fact]
    public async Task Metrics_need_a_token_on_the_api_port_and_the_metrics_port_serves_nothing_else()
    {
        _h.StartHub(null, "--MetricsPort", HubHarness.Str(_metricsPort));
        var anonymous = await _scraper.GetAsync($"{_h.HubUrl}/metrics");
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        var withToken = await _h.Api.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, withToken.StatusCode);
        Assert.Contains("edgeml_ingest_records_stored_total", await withToken.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        Assert.Equal(HttpStatusCode.OK, (await _scraper.GetAsync($"http://127.0.0.1:{_metricsPort}/metrics")).StatusCode);
        using var asOperator = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{_metricsPort}/api/devices");
        asOperator.Headers.Authorization = _h.Api.DefaultRequestHeaders.Authorization;
        Assert.Equal(HttpStatusCode.NotFound, (await _scraper.SendAsync(asOperator)).StatusCode); // not the API, even with a token
    }

    [Fact]
    public async Task The_metrics_port_serves_only_get_and_head_of_exactly_metrics_with_plain_text_refusals()
    {
        _h.StartHub(null, "--MetricsPort", HubHarness.Str(_metricsPort));
        var port = $"http://127.0.0.1:{_metricsPort}";
        using (var head = new HttpRequestMessage(HttpMethod.Head, $"{port}/metrics"))
        {
            Assert.Equal(HttpStatusCode.OK, (await _scraper.SendAsync(head)).StatusCode);
        }

        foreach (var method in new[] { HttpMethod.Post, HttpMethod.Put, HttpMethod.Delete })
        {
            using var request = new HttpRequestMessage(method, $"{port}/metrics");
            var r = await _scraper.SendAsync(request);
            Assert.Equal(HttpStatusCode.MethodNotAllowed, r.StatusCode);
            Assert.Equal("GET, HEAD", string.Join(", ", r.Content.Headers.Allow));
            Assert.Equal("text/plain", r.Content.Headers.ContentType?.MediaType);
            Assert.Equal($"{method.Method} is not allowed: GET /metrics", (await r.Content.ReadAsStringAsync()).Trim());
        }

        foreach (var path in new[] { "/METRICS", "/Metrics", "/metrics/x", "/metrics/", "/", "/api/devices", "/index.html" })
        {
            var r = await _scraper.GetAsync(port + path);
            Assert.True(r.StatusCode == HttpStatusCode.NotFound, $"{path}: {(int)r.StatusCode}");
            Assert.Equal("text/plain", r.Content.Headers.ContentType?.MediaType);
            Assert.Equal("not found: this port serves only GET /metrics", (await r.Content.ReadAsStringAsync()).Trim());
        }

        // On the API's own address /metrics is an API route: a wrong method is a JSON 405 there.
        var post = await _h.Api.PostAsync("/metrics", new StringContent(""));
        Assert.Equal(HttpStatusCode.MethodNotAllowed, post.StatusCode);
        Assert.Contains("not allowed on /metrics", HubHarness.Json(post).GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--MetricsPort", "70000", "--MetricsPort '70000' is not a port")]
    [InlineData("--MetricsAddress", "localhost", "--MetricsAddress 'localhost' is not an IP address")]
    [InlineData("--MetricsSampleSeconds", "-1", "--MetricsSampleSeconds '-1' is not a number of seconds from 0")]
    [InlineData("--MetricsPort", "abc", "--MetricsPort 'abc' is not a port")]
    [InlineData("--RetentionDays", "abc", "--RetentionDays 'abc' is not a number of days")]
    public void A_bad_metrics_setting_is_one_line_naming_it(string option, string value, string message)
    {
        // On the command line a value its setting can never take is a usage error (HubCommandLineTests).
        var (code, _, err) = HubHarness.Run(Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll"), "--Data", _h.HubData, option, value);
        Assert.Equal(2, code);
        Assert.Contains(message, err, StringComparison.Ordinal);
        Assert.Single(err.Trim().Split('\n')); // one line, no stack trace
    }

    public void Dispose()
    {
        _scraper.Dispose();
        _h.Dispose();
    }
}
