using System.Text.Json;

namespace EdgeMl.FleetHub.Tests;

/// <summary>The registry as field engineers and operators see it: presence, latest health, model, filters, history, and the CLI's views.</summary>
public sealed class HubRegistryTests : IDisposable
{
    private readonly HubHarness _h = new();

    [Fact]
    public void Devices_report_health_the_registry_keeps_the_latest_and_its_history_and_filters_by_group_status_and_model()
    {
        _h.StartHub();
        _h.Enroll("kiln-1", group: "line-a");
        _h.Enroll("kiln-2", group: "line-b");
        _h.Register("kiln-3", group: "line-a"); // registered, never enrolled
        using var a = _h.Agent("kiln-1", 0, fast: false, healthEvery: 1);
        HubHarness.Until(() => _h.Get("/api/devices/kiln-1/health").GetArrayLength() >= 2, "two health reports from kiln-1", 40_000);

        var d = _h.Device("kiln-1");
        Assert.Equal("online", d.GetProperty("presence").GetString());
        Assert.Equal("vibration-fault", d.GetProperty("model").GetString());
        Assert.Equal("1.0.0", d.GetProperty("modelVersion").GetString());
        var health = d.GetProperty("health");
        Assert.True(health.GetProperty("model").GetProperty("predictions").GetInt64() > 0);
        var system = health.GetProperty("system");
        Assert.True(system.GetProperty("memoryTotalMb").GetDouble() > 100);
        Assert.True(system.GetProperty("processRssMb").GetDouble() > 1);
        Assert.True(system.GetProperty("diskFreeMb").GetDouble() > 0);
        Assert.True(system.GetProperty("cpus").GetInt32() >= 1);
        Assert.True(health.GetProperty("outbox").GetProperty("maxBytes").GetInt64() > 0);

        var history = _h.Get("/api/devices/kiln-1/health").EnumerateArray().ToList();
        var stamps = history.Select(r => r.GetProperty("at").GetInt64()).ToList();
        Assert.Equal(stamps.OrderDescending(), stamps); // newest first
        Assert.All(history, r => Assert.Equal("health", r.GetProperty("class").GetString()));
        // The registry's latest health is one of the reports in the history (read after it).
        Assert.Contains(d.GetProperty("health").GetProperty("at").GetDateTimeOffset(), history.Select(r => r.GetProperty("data").GetProperty("at").GetDateTimeOffset()));

        static string[] Ids(JsonElement list) => list.EnumerateArray().Select(x => x.GetProperty("id").GetString()!).ToArray();
        Assert.Equal(["kiln-1", "kiln-3"], Ids(_h.Get("/api/devices?group=line-a")));
        Assert.Equal(["kiln-1"], Ids(_h.Get("/api/devices?status=online")));
        Assert.Equal(["kiln-3"], Ids(_h.Get("/api/devices?status=pending")));
        Assert.Equal(["kiln-1"], Ids(_h.Get("/api/devices?model=vibration-fault@1.0.0")));
        Assert.Empty(Ids(_h.Get("/api/devices?model=vibration-fault@2.0.0")));

        // People get tables.
        var (code, list, err) = HubHarness.Run(HubHarness.CliDll, "devices", "list", "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        Assert.True(code == 0, err);
        var row = list.Split('\n').Single(l => l.StartsWith("kiln-1 ", StringComparison.Ordinal));
        Assert.Matches(@"kiln-1\s+line-a\s+online\s+.*vibration-fault@1\.0\.0\s+[0-9.]+ ms\s+\S+\s+\d+\s+enrolled", row);
        Assert.Contains("3 device(s); 1 online", list, StringComparison.Ordinal);

        var (showCode, show, showErr) = HubHarness.Run(HubHarness.CliDll, "devices", "show", "kiln-1", "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        Assert.True(showCode == 0, showErr);
        Assert.Matches(@"presence:\s+online", show);
        Assert.Matches(@"inference:\s+[0-9.]+/s, p50 [0-9.]+ ms, p99 [0-9.]+ ms", show);
        Assert.Matches(@"system:\s+cpu \d+%, memory \d+% used \(agent rss [0-9.]+ MB\), disk free \d+ MB", show);
        Assert.Matches(@"sensor sim:vibration:\s+ok", show);

        var (missing, _, missingErr) = HubHarness.Run(HubHarness.CliDll, "devices", "show", "kiln-9", "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        Assert.Equal(1, missing);
        Assert.Contains("no device 'kiln-9'", missingErr, StringComparison.Ordinal);
        a.Kill();
        a.WaitForExit();
    }

    public void Dispose() => _h.Dispose();
}
