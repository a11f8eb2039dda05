using System.Net;
using System.Net.Http.Headers;
using System.Text;
using CsCheck;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// Property tests of the REST API (CsCheck): random and mutated routes, query strings and bodies against a live hub,
/// as a viewer and as an operator. Never a 5xx, every error is JSON, a viewer changes nothing, and the hub keeps serving.
/// </summary>
public sealed class HubApiPropertyTests : IDisposable
{
    private static readonly string[] Routes =
    [
        "GET /api/devices", "GET /api/devices/{id}", "GET /api/devices/{id}/telemetry", "GET /api/devices/{id}/records", "GET /api/devices/{id}/alerts",
        "GET /api/devices/{id}/health", "GET /api/drift", "GET /api/drift/series", "GET /api/ingest", "GET /api/ingest/quarantine", "GET /api/models", "GET /api/models/limits",
        "GET /api/models/{id}/{id}", "GET /api/models/{id}/{id}/package", "GET /api/rollouts", "GET /api/rollouts/{id}", "GET /api/audit", "GET /api/tokens",
        "POST /api/devices", "POST /api/devices/{id}/desired", "POST /api/devices/{id}/revoke", "POST /api/enroll", "POST /api/rollouts",
        "POST /api/rollouts/{id}/pause", "POST /api/rollouts/{id}/resume", "POST /api/rollouts/{id}/abort", "POST /api/rollback", "POST /api/tokens",
        "POST /api/tokens/{id}/revoke", "POST /api/models", "GET /api/session", "POST /api/session", "DELETE /api/session",
        "GET /api/fleet/summary", "GET /api/devices/page", "GET /api/devices/{id}/presence", "GET /api/alerts",
    ];

    private static readonly string[] QueryKeys = ["since", "limit", "device", "group", "class", "status", "model", "tag", "format", "action", "subject", "x",
        "q", "buckets", "sort", "page", "pageSize", "drift", "until", "active", "kind"];

    /// <summary>Values people and attackers type: numbers out of range, encodings, paths, JSON, control characters.</summary>
    private static readonly string[] Nasty =
    [
        "", " ", "0", "-1", "1e999", "1e300d", "NaN", "-Infinity", "2147483648", "9223372036854775808", "0x10", "24h", "-5h", "7d", "1.5", "%", "%00", "%ZZ",
        "../../etc/passwd", "..", ".", "a/b", "a@", "@1", "m@1.0.0", "dev-1", "DEV-1", "operator", "hub", "$SYS", "#", "+", "\u0000", "\u202e", "ü", "😀",
        "{\"a\":1}", "[", "null", "true", "<script>", "' OR 1=1 --", new string('a', 5000), "2026-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01",
    ];

    private static readonly string[] Bodies =
    [
        """{"id":"dev-9","group":"g","tags":{"k":"v"},"expiresHours":1}""", """{"model":"m@1.0.0","shadowSeconds":5}""", """{"token":"x","password":"y"}""",
        """{"model":"m@1.0.0","group":"g","waves":"5%,100%","gates":["agreement>=0.9"],"soak":"10s","watch":"5s"}""", """{"group":"g"}""",
        """{"role":"viewer","name":"n","expiresHours":2}""", "{}", "[]", "null", "",
    ];

    private readonly HubHarness _h = new();

    public void Dispose() => _h.Dispose();

    private static Gen<string> Value => Gen.OneOf(Gen.OneOfConst(Nasty), Gen.String[Gen.Char.AlphaNumeric, 0, 12], Gen.String[0, 40], Gen.Double.Select(d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture)));

    private static Gen<string> Body => Gen.OneOf(
        Gen.OneOfConst(Bodies),
        Gen.Select(Gen.OneOfConst(Bodies), Gen.Int[0, 200], Gen.OneOfConst(Nasty)).Select((b, at, v) => b.Length == 0 ? v : b.Insert(Math.Min(at, b.Length), v)),
        Gen.Select(Gen.OneOfConst(Bodies), Gen.Int[0, 200]).Select((b, cut) => b[..Math.Min(cut, b.Length)]),
        Gen.Select(Gen.OneOfConst(QueryKeys.Concat(["id", "role", "name", "tags", "expiresHours", "waves", "gates", "devices", "model"]).ToArray()), Gen.OneOfConst(Nasty))
            .Select((k, v) => $"{{\"{k}\":{(v.StartsWith('{') || v.StartsWith('[') || double.TryParse(v, out _) ? v : System.Text.Json.JsonSerializer.Serialize(v))}}}"),
        Gen.Byte.Array[0, 300].Select(b => Encoding.Latin1.GetString(b)));

    /// <summary>One request: a route with its placeholders filled, 0–3 query parameters, a body for POSTs.</summary>
    private static Gen<(string Method, string Path, string Body)> Request =>
        Gen.Select(Gen.OneOfConst(Routes), Value.Array[3], Gen.Select(Gen.OneOfConst(QueryKeys), Value).Array[0, 3], Body)
            .Select((route, ids, query, body) =>
            {
                var (method, template) = (route[..route.IndexOf(' ')], route[(route.IndexOf(' ') + 1)..]);
                var i = 0;
                var path = string.Join('/', template.Split('/').Select(s => s == "{id}" ? Uri.EscapeDataString(ids[i++]) is { Length: > 0 } e ? e : "x" : s));
                var q = string.Join('&', query.Select(kv => $"{kv.Item1}={Uri.EscapeDataString(kv.Item2)}"));
                return (method, q.Length > 0 ? $"{path}?{q}" : path, body);
            });

    [Fact]
    public async Task Random_and_mutated_requests_never_get_a_5xx_and_a_viewer_changes_nothing()
    {
        _h.StartHub();
        _h.Register("dev-1", "g");
        var viewerToken = HubHarness.Json(await _h.Api.PostAsync("/api/tokens", Json("""{"role":"viewer","name":"prop-viewer"}"""))).GetProperty("token").GetString()!;
        using var viewer = new HttpClient { BaseAddress = _h.Api.BaseAddress };
        viewer.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", viewerToken);

        var before = await StateAsync();
        var served = 0;
        await Request.SampleAsync(async r =>
        {
            var status = await SendAsync(viewer, r);
            Assert.True(status < 500, $"viewer {r.Method} {r.Path} body {r.Body} → {status}");
            served++;
        }, iter: 400, threads: 1);
        Assert.Equal(before, await StateAsync()); // a viewer may read everything and change nothing
        Assert.Equal(400, served);

        await Request.SampleAsync(async r =>
        {
            var status = await SendAsync(_h.Api, r);
            Assert.True(status < 500, $"operator {r.Method} {r.Path} body {r.Body} → {status}");
        }, iter: 400, threads: 1);

        // The hub still serves both of them.
        Assert.Equal(HttpStatusCode.OK, (await _h.Api.GetAsync("/api/devices")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await viewer.GetAsync("/api/devices/dev-1")).StatusCode);
    }

    [Fact]
    public async Task Every_route_refuses_a_query_parameter_it_does_not_take_naming_it_and_changes_nothing()
    {
        _h.StartHub();
        _h.Register("dev-1", "g");
        var before = await StateAsync();
        var routes = Gen.Select(Gen.OneOfConst(Routes), Gen.String[Gen.Char['a', 'z'], 1, 12], Gen.Select(Gen.OneOfConst(QueryKeys), Value).Array[0, 2], Body);
        await routes.SampleAsync(async (route, name, known, body) =>
        {
            var (method, template) = (route[..route.IndexOf(' ')], route[(route.IndexOf(' ') + 1)..]);
            var unknown = "zz" + name; // no endpoint takes a name starting with zz
            var query = string.Join('&', known.Select(kv => $"{kv.Item1}={Uri.EscapeDataString(kv.Item2)}").Append($"{unknown}=1"));
            using var request = new HttpRequestMessage(new HttpMethod(method), $"{template.Replace("{id}", "dev-1", StringComparison.Ordinal)}?{query}");
            if (method == "POST") request.Content = new StringContent(body, Encoding.UTF8, "application/json");
            using var response = await _h.Api.SendAsync(request);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{method} {request.RequestUri} → {(int)response.StatusCode} {text}");
            Assert.Contains($"'{unknown}'", System.Text.Json.JsonDocument.Parse(text).RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
        }, iter: 200, threads: 1);
        Assert.Equal(before, await StateAsync());
    }

    /// <summary>Sends; checks that an error answer is a JSON error; returns the status code.</summary>
    private static async Task<int> SendAsync(HttpClient client, (string Method, string Path, string Body) r)
    {
        using var request = new HttpRequestMessage(new HttpMethod(r.Method), r.Path);
        if (r.Method == "POST") request.Content = new StringContent(r.Body, Encoding.UTF8, r.Path.StartsWith("/api/models", StringComparison.Ordinal) ? "application/zip" : "application/json");
        using var response = await client.SendAsync(request);
        var status = (int)response.StatusCode;
        if (status >= 400 && status != 404 && status != 405)
        {
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(text.Length == 0 || text.TrimStart().StartsWith('{'), $"{r.Method} {r.Path} → {status} without a JSON error: {text[..Math.Min(200, text.Length)]}");
        }

        return status;
    }

    /// <summary>What a viewer must not be able to change: devices, models, rollouts, tokens, the audit trail.</summary>
    private async Task<string> StateAsync()
    {
        var parts = new List<string>();
        foreach (var path in new[] { "/api/devices", "/api/models", "/api/rollouts", "/api/tokens", "/api/audit" })
        {
            parts.Add(await _h.Api.GetStringAsync(path));
        }

        return string.Join('\n', parts);
    }

    private static StringContent Json(string text) => new(text, Encoding.UTF8, "application/json");
}
