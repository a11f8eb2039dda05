using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// The dashboard's data APIs on a real hub with real agent processes: counts and the fleet table over live devices,
/// health by time, presence history, the offline alert (API, <c>edgeml/alerts/offline</c> through mosquitto_sub, the event
/// stream) when an agent is killed and its clearing when it comes back; and hostile query strings.
/// </summary>
public sealed class HubDashboardApiTests : IDisposable
{
    private readonly HubHarness _h = new();

    public void Dispose() => _h.Dispose();

    private HttpClient Viewer(out string token)
    {
        var response = _h.Api.PostAsJsonAsync("/api/tokens", new { role = "viewer", name = "dashboard" }).Result;
        Assert.True(response.IsSuccessStatusCode);
        token = HubHarness.Json(response).GetProperty("token").GetString()!;
        var client = new HttpClient { BaseAddress = _h.Api.BaseAddress, Timeout = Timeout.InfiniteTimeSpan };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    private static JsonElement Get(HttpClient client, string path)
    {
        var response = client.GetAsync(path).Result;
        Assert.True(response.IsSuccessStatusCode, $"GET {path}: {(int)response.StatusCode} {response.Content.ReadAsStringAsync().Result}");
        return HubHarness.Json(response);
    }

    private static string[] Ids(JsonElement page) => page.GetProperty("items").EnumerateArray().Select(i => i.GetProperty("id").GetString()!).ToArray();

    [Fact]
    public async Task A_killed_agent_raises_an_offline_alert_on_the_api_mqtt_and_the_event_stream_and_its_return_clears_it()
    {
        _h.StartHub(null, "--OfflineAfter", "2s");
        using var viewer = Viewer(out var viewerToken);
        _h.Enroll("dash-1", group: "line-a");
        _h.Enroll("dash-2", group: "line-b");
        _h.Register("dash-3", group: "line-a"); // registered, never seen
        using var alerts = new MosquittoSub(_h.Mqtt, "edgeml/alerts/offline", "api-dash", ["-u", "api", "-P", viewerToken]);
        await using var events = await EventStream.OpenAsync(viewer);
        var a = _h.Agent("dash-1", 0, fast: false, healthEvery: 1);
        using var b = _h.Agent("dash-2", 0, fast: false, healthEvery: 1);
        HubHarness.Until(() => Get(viewer, "/api/devices/page?status=online").GetProperty("items").EnumerateArray().Count(i => i.GetProperty("cpuPercent").ValueKind == JsonValueKind.Number) == 2,
            "both agents online with a health report", 40_000);

        // Counts and the table over the live devices.
        var summary = Get(viewer, "/api/fleet/summary");
        Assert.Equal((3, 2, 0, 1, 0, 0), (summary.GetProperty("total").GetInt32(), summary.GetProperty("online").GetInt32(), summary.GetProperty("offline").GetInt32(),
            summary.GetProperty("neverSeen").GetInt32(), summary.GetProperty("unhealthy").GetInt32(), summary.GetProperty("drifting").GetInt32()));
        var lineA = summary.GetProperty("groups").EnumerateArray().Single(g => g.GetProperty("group").GetString() == "line-a");
        Assert.Equal((2, 1, 1), (lineA.GetProperty("total").GetInt32(), lineA.GetProperty("online").GetInt32(), lineA.GetProperty("neverSeen").GetInt32()));
        var model = summary.GetProperty("models").EnumerateArray().Single();
        Assert.Equal(("vibration-fault", "1.0.0", 2), (model.GetProperty("name").GetString(), model.GetProperty("version").GetString(), model.GetProperty("devices").GetInt32()));
        Assert.Equal(["dash-2", "dash-1"], Ids(Get(viewer, "/api/devices/page?status=online&sort=-id")));
        var second = Get(viewer, "/api/devices/page?group=line-a&pageSize=1&page=2");
        Assert.Equal((2, 2, 1), (second.GetProperty("total").GetInt32(), second.GetProperty("page").GetInt32(), second.GetProperty("pageSize").GetInt32()));
        Assert.Equal(["dash-3"], Ids(second));
        var row = Get(viewer, "/api/devices/page?q=DASH-1").GetProperty("items").EnumerateArray().Single();
        Assert.Equal(("online", "vibration-fault", "1.0.0", true, "line-a"), (row.GetProperty("presence").GetString(), row.GetProperty("model").GetString(),
            row.GetProperty("version").GetString(), row.GetProperty("healthy").GetBoolean(), row.GetProperty("group").GetString()));
        Assert.True(row.GetProperty("p99Ms").ValueKind == JsonValueKind.Number && row.GetProperty("memoryPercent").GetDouble() > 0 && row.GetProperty("outboxDepth").GetInt64() >= 0);
        Assert.Equal("neverSeen", Get(viewer, "/api/devices/page?q=dash-3").GetProperty("items")[0].GetProperty("presence").GetString());

        // Health by the device's time: since a minute ago; until excludes the newest.
        var since = DateTimeOffset.UtcNow.AddMinutes(-1);
        var recent = Get(viewer, $"/api/devices/dash-1/health?since={Uri.EscapeDataString(since.ToString("O"))}").EnumerateArray().ToList();
        Assert.NotEmpty(recent);
        Assert.All(recent, r => Assert.True(r.GetProperty("at").GetInt64() >= since.ToUnixTimeMilliseconds()));
        var newest = recent[0].GetProperty("at").GetInt64();
        var until = DateTimeOffset.FromUnixTimeMilliseconds(newest).ToString("O");
        Assert.All(Get(viewer, $"/api/devices/dash-1/health?since=1h&until={Uri.EscapeDataString(until)}").EnumerateArray(), r => Assert.True(r.GetProperty("at").GetInt64() < newest));

        // The agent is killed: the Last Will says offline at once; the alert follows after --OfflineAfter.
        a.Kill();
        a.WaitForExit();
        events.WaitFor("presence", e => e.GetProperty("device").GetString() == "dash-1" && e.GetProperty("presence").GetString() == "offline", "an offline presence event");
        HubHarness.Until(() => Get(viewer, "/api/alerts?active=true&kind=offline").GetArrayLength() == 1, "the offline alert on GET /api/alerts", 20_000);
        var alert = Get(viewer, "/api/alerts?active=true&kind=offline")[0];
        Assert.Equal(("offline", "dash-1", "warning", JsonValueKind.Null), (alert.GetProperty("kind").GetString(), alert.GetProperty("device").GetString(),
            alert.GetProperty("severity").GetString(), alert.GetProperty("clearedAt").ValueKind));
        Assert.Contains("not seen since", alert.GetProperty("message").GetString(), StringComparison.Ordinal);
        alerts.WaitUntil(m => m.Any(x => x.Payload.Contains("\"device\":\"dash-1\"", StringComparison.Ordinal) && x.Payload.Contains("\"state\":\"raised\"", StringComparison.Ordinal)),
            "the offline alert on edgeml/alerts/offline");
        events.WaitFor("alert", e => e.GetProperty("kind").GetString() == "offline" && e.GetProperty("clearedAt").ValueKind == JsonValueKind.Null, "an alert event");
        Assert.Equal(1, Get(viewer, "/api/fleet/summary").GetProperty("offline").GetInt32());
        Assert.Equal(["dash-1"], Ids(Get(viewer, "/api/devices/page?status=offline")));
        var timeline = Get(viewer, "/api/devices/dash-1/presence").EnumerateArray().Select(p => p.GetProperty("presence").GetString()).ToList();
        Assert.Equal(["online", "offline"], timeline);

        // It comes back: the alert is cleared, and the clear is published too.
        using var again = _h.Agent("dash-1", 0, fast: false, healthEvery: 1);
        HubHarness.Until(() => Get(viewer, "/api/alerts?active=false&kind=offline&device=dash-1").GetArrayLength() == 1, "the offline alert cleared", 30_000);
        Assert.Empty(Get(viewer, "/api/alerts?active=true").EnumerateArray());
        alerts.WaitUntil(m => m.Any(x => x.Payload.Contains("\"state\":\"cleared\"", StringComparison.Ordinal)), "the clear on edgeml/alerts/offline");
        events.WaitFor("alert", e => e.GetProperty("clearedAt").ValueKind == JsonValueKind.String, "the cleared alert event");
        Assert.Equal(["online", "offline", "online"], Get(viewer, "/api/devices/dash-1/presence").EnumerateArray().Select(p => p.GetProperty("presence").GetString()));
        Assert.Single(alerts.Messages, m => m.Payload.Contains("\"state\":\"raised\"", StringComparison.Ordinal)); // once, however many checks ran
        events.WaitFor("health", e => e.GetProperty("device").GetString() == "dash-2", "health events");
    }

    [Fact]
    public async Task An_event_stream_ends_when_its_token_is_revoked()
    {
        _h.StartHub();
        var token = HubHarness.Json(await _h.Api.PostAsJsonAsync("/api/tokens", new { role = "viewer", name = "watcher" })).GetProperty("token").GetString()!;
        using var viewer = new HttpClient { BaseAddress = _h.Api.BaseAddress };
        viewer.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        await using var stream = await EventStream.OpenAsync(viewer);

        var revoked = await _h.Api.PostAsync("/api/tokens/watcher/revoke", null);
        Assert.True(revoked.IsSuccessStatusCode, await revoked.Content.ReadAsStringAsync());
        stream.WaitFor("signedout", e => e.GetProperty("error").GetString()!.Contains("no longer valid", StringComparison.Ordinal), "the end of the stream");
        Assert.True(await stream.EndedAsync(TimeSpan.FromSeconds(10)), "the hub kept the stream open after saying so");
    }

    [Fact]
    public async Task A_big_body_anywhere_but_a_model_push_is_refused_with_413_before_any_login()
    {
        _h.StartHub();
        using var anonymous = new HttpClient { BaseAddress = _h.Api.BaseAddress };
        using var body = new StringContent("{\"token\":\"" + new string('A', 2 << 20) + "\"}", System.Text.Encoding.UTF8, "application/json");
        var r = await anonymous.PostAsync("/api/session", body);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, r.StatusCode);
        Assert.Contains("1024 KiB", HubHarness.Json(r).GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await _h.Api.GetAsync("/api/devices")).StatusCode); // and it keeps serving
    }

    [Fact]
    public async Task Hostile_query_strings_on_the_dashboard_apis_are_400s_naming_the_parameter()
    {
        _h.StartHub();
        _h.Register("dash-1");
        foreach (var (path, name) in new[]
                 {
                     ("/api/devices/page?pageSize=501", "pageSize"), ("/api/devices/page?pageSize=0", "pageSize"), ("/api/devices/page?page=-1", "page"),
                     ("/api/devices/page?page=abc", "page"), ("/api/devices/page?page=99999999999", "page"), ("/api/devices/page?sort=cpu", "sort"),
                     ("/api/devices/page?sort=--id", "sort"), ("/api/devices/page?status=sleeping", "status"), ("/api/devices/page?drift=bad", "drift"),
                     ("/api/devices/page?group=a%2Fb", "group"), ("/api/devices/page?tag==v", "tag"), ("/api/devices/page?model=%40", "model"),
                     ("/api/devices/page?q=%00", "q"), ("/api/devices/page?group=a&group=b", "group"), ("/api/devices/page?q=" + new string('x', 5000), "q"),
                     ("/api/devices/dash-1/health?since=yesterday", "since"), ("/api/devices/dash-1/health?until=1e300d", "until"),
                     ("/api/devices/dash-1/health?limit=0", "limit"), ("/api/devices/dash-1/health?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "since"),
                     ("/api/devices/nobody/health?since=%E2%80%AE", "since"), ("/api/devices/dash-1/presence?since=-5h", "since"), ("/api/devices/dash-1/presence?limit=x", "limit"),
                     ("/api/alerts?active=yes", "active"), ("/api/alerts?kind=fire", "kind"), ("/api/alerts?limit=1001", "limit"), ("/api/alerts?device=a%2Fb", "device"),
                     ("/api/devices?status=bogus", "status"), ("/api/devices?status=unknown", "status"), ("/api/devices/dash-1/health/series?points=0", "points"),
                     ("/api/devices/dash-1/health/series?points=5001", "points"), ("/api/devices/dash-1/health/series?since=yesterday", "since"),
                     ("/api/devices/dash-1/health/series?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "since"),
                     ("/api/devices/dash-1/health/series?points=1&points=2", "points"),
                 })
        {
            var r = await _h.Api.GetAsync(path);
            var body = await r.Content.ReadAsStringAsync();
            Assert.True(r.StatusCode == HttpStatusCode.BadRequest, $"GET {path}: {(int)r.StatusCode} {body}");
            Assert.Contains(name, JsonDocument.Parse(body).RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
        }

        // Good values and empty ones are fine (a parameter an endpoint does not take is not: HubApiErrorTests).
        foreach (var path in new[]
                 {
                     "/api/devices/page?q=&group=&sort=-lastSeen&page=1&pageSize=500", "/api/devices/page?page=1000000", "/api/devices/page?model=m@1.0.0&tag=site=a=b&drift=drifting",
                     "/api/devices/dash-1/health?since=2026-01-01T00:00:00&until=9999-12-31T23:59:59Z&limit=10000", "/api/devices/dash-1/presence?since=0001-01-01T00:00:00Z",
                     "/api/alerts?active=false&kind=rule&device=dash-1&limit=1", "/api/fleet/summary", "/api/devices?status=neverSeen",
                     "/api/devices/dash-1/health/series?since=24h&points=600", "/api/devices/dash-1/health/series",
                 })
        {
            var r = await _h.Api.GetAsync(path);
            Assert.True(r.StatusCode == HttpStatusCode.OK, $"GET {path}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
        }

        Assert.Equal(HttpStatusCode.NotFound, (await _h.Api.GetAsync("/api/devices/nobody/presence")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _h.Api.GetAsync("/api/devices/nobody/health/series")).StatusCode);

        // The status filter's error lists what it takes; a device never heard from is "neverSeen" in both lists, as in the counts.
        var bogus = HubHarness.Json(await _h.Api.GetAsync("/api/devices?status=bogus")).GetProperty("error").GetString()!;
        Assert.Equal("status 'bogus' is not one of online, offline, neverSeen, pending, enrolled, revoked, unregistered", bogus);
        var listed = HubHarness.Json(await _h.Api.GetAsync("/api/devices?status=neverSeen")).EnumerateArray().Single();
        Assert.Equal(("dash-1", "neverSeen"), (listed.GetProperty("id").GetString(), listed.GetProperty("presence").GetString()));
        Assert.Equal("neverSeen", HubHarness.Json(await _h.Api.GetAsync("/api/devices/dash-1")).GetProperty("presence").GetString());
        Assert.Equal("neverSeen", HubHarness.Json(await _h.Api.GetAsync("/api/devices/page?q=dash-1")).GetProperty("items")[0].GetProperty("presence").GetString());
        var empty = HubHarness.Json(await _h.Api.GetAsync("/api/devices/dash-1/health/series?since=1h&points=10"));
        Assert.Equal((0, 10, 0), (empty.GetProperty("reports").GetInt32(), empty.GetProperty("points").GetInt32(), empty.GetProperty("at").GetArrayLength()));
        using var anonymous = new HttpClient { BaseAddress = _h.Api.BaseAddress };
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/api/events")).StatusCode);
    }

    /// <summary>A client of <c>GET /api/events</c>: every event as it arrives (name and JSON data).</summary>
    private sealed class EventStream : IAsyncDisposable
    {
        private readonly HttpResponseMessage _response;
        private readonly CancellationTokenSource _stop = new();
        private readonly ConcurrentQueue<(string Name, JsonElement Data)> _events = new();
        private Task _reader = Task.CompletedTask;

        private EventStream(HttpResponseMessage response) => _response = response;

        public static async Task<EventStream> OpenAsync(HttpClient client)
        {
            var response = await client.GetAsync("/api/events", HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
            var stream = new EventStream(response);
            var body = new StreamReader(await response.Content.ReadAsStreamAsync());
            stream._reader = Task.Run(async () =>
            {
                string? name = null;
                var data = "";
                try
                {
                    while (await body.ReadLineAsync(stream._stop.Token) is { } line)
                    {
                        if (line.StartsWith("event: ", StringComparison.Ordinal)) name = line["event: ".Length..];
                        else if (line.StartsWith("data: ", StringComparison.Ordinal)) data += line["data: ".Length..];
                        else if (line.Length == 0 && name is not null)
                        {
                            stream._events.Enqueue((name, JsonDocument.Parse(data).RootElement.Clone()));
                            (name, data) = (null, "");
                        }
                    }
                }
                catch (Exception e) when (e is OperationCanceledException or IOException or HttpRequestException)
                {
                    // Closed by the test.
                }
            });
            return stream;
        }

        public void WaitFor(string name, Func<JsonElement, bool> match, string what) =>
            HubHarness.Until(() => _events.Any(e => e.Name == name && match(e.Data)), $"{what} on GET /api/events", 30_000);

        /// <summary>Whether the hub ended the stream (the body reached its end) within <paramref name="timeout"/>.</summary>
        public async Task<bool> EndedAsync(TimeSpan timeout) => await Task.WhenAny(_reader, Task.Delay(timeout)) == _reader;

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _response.Dispose();
            await _reader;
            _stop.Dispose();
        }
    }
}
