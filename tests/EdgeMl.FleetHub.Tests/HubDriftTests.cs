using System.Text.Json;
using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.FleetHub.Tests;

/// <summary>Agents report drift sketches; the hub merges them per device and group, tests them, and alerts.</summary>
public sealed class HubDriftTests : IDisposable
{
    private readonly HubHarness _h = new();

    [Fact]
    public void A_drifting_sensor_reaches_major_while_the_other_devices_stay_ok_and_the_group_and_an_alert_show_it()
    {
        var keys = Path.Combine(_h.Dir.Path, "keys");
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "keys", "create", "ops", "--dir", keys).Code);
        _h.StartHub(null, "--TrustedKeys:0", Path.Combine(keys, "ops.pub"));
        var package = _h.SignedVariant("1.0.0", Path.Combine(keys, "ops.key"));
        var (_, created, _) = HubHarness.Run(HubHarness.CliDll, "tokens", "create", "--role", "viewer", "--name", "alerts", "--json", "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        var viewer = JsonDocument.Parse(created).RootElement.GetProperty("token").GetString()!;
        using var alerts = new MosquittoSub(_h.Mqtt, "edgeml/alerts/#", "api-alerts", ["-u", "api", "-P", viewer]);

        string[] Window(int seed) => ["--Agent:Drift:WindowSeconds=1", "--seed", HubHarness.Str(seed)];
        foreach (var d in new[] { "oven-1", "oven-2", "oven-3" }) _h.Enroll(d, group: "line-c");
        using var a = _h.Agent("oven-1", 0, fast: false, extra: [.. Window(11), "--model", package]);
        using var b = _h.Agent("oven-2", 0, fast: false, extra: [.. Window(12), "--model", package]);
        // oven-3's accelerometer works loose: +1 m/s² offset and ×1.5 gain after 3 s (per simulated hour: 1200, 600).
        using var c = _h.Agent("oven-3", 0, fast: false, extra: [.. Window(13), "--model", package, "--sensor", "sim:vibration,drift-offset=1200,drift-gain=600"]);

        string Status(string query) => _h.Get($"/api/drift?{query}&since=1h").GetProperty("status").GetString()!;

        // The registry does not know the model yet: the windows are stored and shown, not judged by the baseline the devices send.
        HubHarness.Until(() => _h.Get("/api/drift?device=oven-3&since=1h").GetProperty("windows").GetInt32() >= 1, "oven-3's first window");
        Assert.Equal("unknown baseline", Status("device=oven-3"));
        var (pushCode, _, pushErr) = HubHarness.Run(HubHarness.CliDll, "model", "push", package, "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        Assert.True(pushCode == 0, pushErr);
        HubHarness.Until(() => Status("device=oven-3") == "major", "oven-3's drift to reach major", 40_000);
        HubHarness.Until(() => _h.Get("/api/drift?device=oven-1&since=1h").GetProperty("windows").GetInt32() >= 3, "three windows from oven-1");
        foreach (var healthy in new[] { "oven-1", "oven-2" })
        {
            var v = _h.Get($"/api/drift?device={healthy}&since=1h");
            Assert.True(v.GetProperty("status").GetString() == "ok", $"{healthy}: " + string.Join(" | ", v.GetProperty("features").EnumerateArray().Concat(v.GetProperty("outputs").EnumerateArray()).Select(f =>
                $"{f.GetProperty("feature")} {f.GetProperty("status")} " + string.Join(",", f.GetProperty("tests").EnumerateArray().Select(t => $"{t.GetProperty("test")}={t.GetProperty("statistic").GetDouble():0.###}")))));
        }
        Assert.NotEqual("ok", Status("group=line-c"));

        var view = _h.Get("/api/drift?device=oven-3&since=1h");
        var ax = view.GetProperty("features").EnumerateArray().Single(f => f.GetProperty("feature").GetString() == "ax");
        Assert.Equal("major", ax.GetProperty("status").GetString());
        var psi = ax.GetProperty("tests").EnumerateArray().Single(t => t.GetProperty("test").GetString() == "psi");
        Assert.True(psi.GetProperty("over").GetBoolean());
        Assert.Equal(0.1, psi.GetProperty("threshold").GetDouble());

        // Over time (the dashboard's drift charts): the hour in 12 buckets, oldest first; the windows are all in the
        // buckets, the newest bucket with windows is major with ax's PSI over its threshold, and a healthy device stays ok.
        var series = _h.Get("/api/drift/series?device=oven-3&since=1h&buckets=12").GetProperty("buckets").EnumerateArray().ToList();
        Assert.Equal(12, series.Count);
        Assert.True(series.Zip(series.Skip(1)).All(p => p.First.GetProperty("until").GetDateTimeOffset() <= p.Second.GetProperty("from").GetDateTimeOffset()));
        Assert.True(series.Sum(b => b.GetProperty("windows").GetInt32()) >= view.GetProperty("windows").GetInt32());
        var newest = series.Last(b => b.GetProperty("windows").GetInt32() > 0);
        Assert.Equal("major", newest.GetProperty("status").GetString());
        Assert.True(newest.GetProperty("features").EnumerateArray().Single(f => f.GetProperty("feature").GetString() == "ax").GetProperty("psi").GetDouble() >= 0.1);
        Assert.All(_h.Get("/api/drift/series?device=oven-1&since=1h&buckets=4").GetProperty("buckets").EnumerateArray().Where(b => b.GetProperty("windows").GetInt32() > 0),
            b => Assert.Equal("ok", b.GetProperty("status").GetString()));

        // Visible in the device's status, and published for alert consumers.
        HubHarness.Until(() => _h.Device("oven-3").TryGetProperty("drift", out var s) && s.GetString() == "major", "oven-3's status to say major");
        alerts.WaitUntil(m => m.Any(x => x.Payload.Contains("\"oven-3\"", StringComparison.Ordinal) && x.Payload.Contains("\"major\"", StringComparison.Ordinal)), "a drift alert for oven-3");
        Assert.DoesNotContain(alerts.Messages, x => x.Payload.Contains("\"oven-1\"", StringComparison.Ordinal));
        alerts.WaitUntil(m => m.Any(x => x.Payload.Contains("\"group line-c\"", StringComparison.Ordinal)), "a drift alert for the group");

        // People get a table.
        var (code, table, err) = HubHarness.Run(HubHarness.CliDll, "drift", "show", "--device", "oven-3", "--since", "1h", "--hub", _h.HubUrl, "--token", viewer);
        Assert.True(code == 0, err);
        Assert.Matches(@"ax\s+major\s+[0-9.]+\*", table);
    }

    public void Dispose() => _h.Dispose();
}
