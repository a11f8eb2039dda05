using System.Net.Http.Json;
using System.Text.Json;
using EdgeMl.TestUtilities;

namespace EdgeMl.FleetHub.Tests;

/// <summary>A model update reaches a device: desired state from the hub, resumable download, verification, staging, phases reported.</summary>
public sealed class ModelUpdateTests : IDisposable
{
    private readonly HubHarness _h = new();

    private (int Code, string Out, string Err) Offline(params string[] args) => HubHarness.Run(HubHarness.CliDll, args);

    /// <summary>The bundled package as another version (the manifest says so), signed.</summary>
    private string Version(string version, string key)
    {
        return _h.SignedVariant(version, key);
    }

    [Fact]
    public async Task A_device_downloads_verifies_stages_and_switches_to_the_desired_model_and_back()
    {
        var keys = Path.Combine(_h.Dir.Path, "keys");
        Assert.Equal(0, Offline("keys", "create", "ops", "--dir", keys).Code);
        var pub = Path.Combine(keys, "ops.pub");
        _h.StartHub(null, "--TrustedKeys:0", pub);
        var v11 = Version("1.1.0", Path.Combine(keys, "ops.key"));
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "model", "push", v11, "--hub", _h.HubUrl, "--token", _h.OperatorToken).Code);

        // The device trusts only the operator's key, so it runs a signed 1.0.0.
        var signed10 = Version("1.0.0", Path.Combine(keys, "ops.key"));
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var agent = _h.Agent("lift-1", 0, fast: false, extra: ["--model", signed10, $"--Agent:TrustedKeys:0={pub}"], onLine: log.Enqueue);
        HubHarness.Until(() => _h.Device("lift-1").GetProperty("presence").GetString() == "online", "the agent online");

        var set = await _h.Api.PostAsJsonAsync("/api/devices/lift-1/desired", new { model = "vibration-fault@1.1.0" });
        Assert.True(set.IsSuccessStatusCode, await set.Content.ReadAsStringAsync());
        var deadline = Environment.TickCount64 + 60_000;
        var reposted = false;
        while (Active() != "vibration-fault@1.1.0")
        {
            if (!reposted && Version() != "1.1.0" && Environment.TickCount64 > deadline - 45_000)
            {
                // Nothing about 1.1.0 reported after 15 s: say it again (it is idempotent); the message notes it if that was needed.
                reposted = true;
                await _h.Api.PostAsJsonAsync("/api/devices/lift-1/desired", new { model = "vibration-fault@1.1.0" });
            }

            Assert.True(Phase() != "failed", $"the device reported failed: {_h.Device("lift-1").GetProperty("reported")}");
            Assert.True(Environment.TickCount64 < deadline, $"1.1.0 not active in 60 s (reported: {Phase() ?? "nothing"} {Version()}, re-posted: {reposted}); agent said:\n{string.Join('\n', log.TakeLast(30))}");
            Thread.Sleep(100);
        }

        // Downloaded, verified, staged, switched: the new model runs from slot a, the one before waits in the other slot.
        var reported = _h.Device("lift-1").GetProperty("reported");
        Assert.Equal("active", reported.GetProperty("phase").GetString());
        Assert.Equal("vibration-fault@1.0.0", reported.GetProperty("previous").GetString());
        Assert.Equal("vibration-fault@1.1.0", _h.Device("lift-1").GetProperty("desired").GetString());
        Assert.Equal(await File.ReadAllBytesAsync(v11), await File.ReadAllBytesAsync(Path.Combine(_h.AgentData("lift-1"), "slots", "a.edgepkg")));

        // Pointing a device at a model the registry does not have is refused; back to 1.0.0 switches slots, no download.
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await _h.Api.PostAsJsonAsync("/api/devices/lift-1/desired", new { model = "vibration-fault@9.9.9" })).StatusCode);
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "model", "push", signed10, "--hub", _h.HubUrl, "--token", _h.OperatorToken).Code);
        await _h.Api.PostAsJsonAsync("/api/devices/lift-1/desired", new { model = "vibration-fault@1.0.0" });
        HubHarness.Until(() => Active() == "vibration-fault@1.0.0" && Phase() == "active", "the device to switch back to 1.0.0 (its other slot)");
    }

    private string? Active() => Reported("active");

    private string? Version() => Reported("version");

    private string? Reported(string key) =>
        _h.Device("lift-1").TryGetProperty("reported", out var r) && r.ValueKind == JsonValueKind.Object && r.TryGetProperty(key, out var v) ? v.GetString() : null;

    private string? Phase() =>
        _h.Device("lift-1").TryGetProperty("reported", out var r) && r.ValueKind == JsonValueKind.Object ? r.GetProperty("phase").GetString() : null;

    public void Dispose() => _h.Dispose();
}
