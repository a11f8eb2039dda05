using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using EdgeMl.TestUtilities;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// Power loss during an update, on real agent processes: each agent kills itself (SIGKILL) at one phase boundary of
/// the update (download, also after its first 4 KB so the restart resumes with a Range request; verification, staging,
/// shadow; the slot copy; the switch), or the test kills it at a random
/// moment; then it is started again. Every device must come back on the old or the new model — never on none — and
/// what it reports must be what it runs; with the desired state still set, all end on the new one. Devices that the
/// hub sent a broken package refuse it and say why.
/// </summary>
public sealed class UpdateCrashTests : IDisposable
{
    private readonly HubHarness _h = new();
    private readonly ConcurrentQueue<string> _log = new();

    private static readonly string[] Boundaries =
    [
        "downloading", "download-chunk", "downloaded", "verified", "staged", "shadowed", "activating",
        "copy", "copy-written", "slot-synced", "switch:written", "switch:synced", "switch:renamed", "activated",
    ];

    private JsonElement? Reported(string device) =>
        _h.Device(device).TryGetProperty("reported", out var r) && r.ValueKind == JsonValueKind.Object ? r : null;

    /// <summary>The model the agent's slot state says it runs (what it loads on start).</summary>
    private string SlotActive(string device, string configured)
    {
        var path = Path.Combine(_h.AgentData(device), "slots", "slots.json");
        if (!File.Exists(path)) return "config";
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var slot = doc.RootElement.GetProperty("active").GetString()!;
        if (slot == "config") return "config";
        var m = doc.RootElement.GetProperty("slots").GetProperty(slot);
        // The slot's package is complete: its SHA-256 is the one the state names.
        var file = Path.Combine(_h.AgentData(device), "slots", $"{slot}.edgepkg");
        Assert.Equal(m.GetProperty("sha256").GetString(), Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(file))));
        return $"{m.GetProperty("name").GetString()}@{m.GetProperty("version").GetString()}";
    }

    [Fact]
    public async Task Killed_at_every_phase_boundary_and_at_random_moments_every_device_ends_on_the_old_or_new_model_and_reports_it_truthfully()
    {
        var keys = Path.Combine(_h.Dir.Path, "keys");
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "keys", "create", "ops", "--dir", keys).Code);
        var pub = Path.Combine(keys, "ops.pub");
        _h.StartHub(null, "--TrustedKeys:0", pub);
        var pkgs = new Dictionary<string, string>();
        foreach (var v in new[] { "1.0.0", "1.1.0" })
        {
            pkgs[v] = _h.SignedVariant(v, Path.Combine(keys, "ops.key"));
        }

        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "model", "push", pkgs["1.1.0"], "--hub", _h.HubUrl, "--token", _h.OperatorToken).Code);
        Process Start(string device, string? crashAt) =>
            _h.Agent(device, 0, fast: false, extra: ["--model", pkgs["1.0.0"], $"--Agent:TrustedKeys:0={pub}"], onLine: l => _log.Enqueue($"{device}: {l}"),
                env: crashAt is null ? null : new Dictionary<string, string> { ["EDGEML_TEST_CRASH_AT"] = crashAt });

        var random = new Random(20261127);
        var devices = Boundaries.Select((b, i) => (Id: $"cut-{i}", CrashAt: (string?)b)).Concat(Enumerable.Range(0, 5).Select(i => (Id: $"rnd-{i}", CrashAt: (string?)null))).ToList();
        var running = new Dictionary<string, Process>();
        foreach (var (id, crashAt) in devices)
        {
            _h.Enroll(id);
            running[id] = Start(id, crashAt);
        }

        foreach (var (id, _) in devices)
        {
            HubHarness.Until(() => Reported(id)?.GetProperty("active").GetString() == "vibration-fault@1.0.0", $"{id} online on 1.0.0");
            var set = await _h.Api.PostAsJsonAsync($"/api/devices/{id}/desired", new { model = "vibration-fault@1.1.0", shadowSeconds = 1, watchSeconds = 1 });
            Assert.True(set.IsSuccessStatusCode, await set.Content.ReadAsStringAsync());
        }

        // Random moments: somewhere in the download, verification, shadow or switch (1 s of shadow, then activation).
        foreach (var (id, _) in devices.Where(d => d.CrashAt is null))
        {
            Thread.Sleep(random.Next(0, 1500));
            running[id].Kill();
        }

        foreach (var (id, crashAt) in devices)
        {
            Assert.True(running[id].WaitForExit(60_000), $"{id} did not stop at {crashAt}; it said:\n{string.Join('\n', _log.Where(l => l.StartsWith(id + ":", StringComparison.Ordinal)).TakeLast(20))}");
            var after = SlotActive(id, pkgs["1.0.0"]);
            Assert.True(after is "config" or "vibration-fault@1.1.0", $"{id} killed at {crashAt ?? "random"}: slot state names {after}");
        }

        // Power comes back: every agent starts on a complete model, reports what it runs, and finishes the update.
        foreach (var (id, _) in devices) running[id] = Start(id, null);
        foreach (var (id, crashAt) in devices)
        {
            HubHarness.Until(() => Reported(id)?.GetProperty("active").GetString() == "vibration-fault@1.1.0"
                                   && Reported(id)?.GetProperty("phase").GetString() == "active", $"{id} (killed at {crashAt ?? "random"}) to end on 1.1.0", 60_000);
            Assert.Equal("vibration-fault@1.1.0", SlotActive(id, pkgs["1.0.0"]));
            Assert.False(running[id].HasExited, $"{id} stopped: {string.Join('\n', _log.Where(l => l.StartsWith(id + ":", StringComparison.Ordinal)).TakeLast(20))}");
        }
    }

    [Fact]
    public async Task A_corrupted_package_or_one_signed_by_a_key_the_device_does_not_trust_is_refused_on_the_device_with_the_reason_reported()
    {
        var keys = Path.Combine(_h.Dir.Path, "keys");
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "keys", "create", "ops", "--dir", keys).Code);
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "keys", "create", "lab", "--dir", keys).Code);
        // The hub trusts both keys; the device only the operator's.
        _h.StartHub(null, "--TrustedKeys:0", Path.Combine(keys, "ops.pub"), "--TrustedKeys:1", Path.Combine(keys, "lab.pub"));
        var pkgs = new Dictionary<string, string>();
        foreach (var (v, key) in new[] { ("1.0.0", "ops"), ("1.1.0", "ops"), ("1.2.0", "lab") })
        {
            pkgs[v] = _h.SignedVariant(v, Path.Combine(keys, $"{key}.key"));
            if (v != "1.0.0") Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "model", "push", pkgs[v], "--hub", _h.HubUrl, "--token", _h.OperatorToken).Code);
        }

        // A byte of the stored 1.1.0 flips on the hub's disk.
        var stored = Directory.GetFiles(Path.Combine(_h.HubData, "models"), "1.1.0-*.edgepkg", SearchOption.AllDirectories).Single();
        var bytes = await File.ReadAllBytesAsync(stored);
        bytes[bytes.Length / 2] ^= 0x01;
        await File.WriteAllBytesAsync(stored, bytes);

        _h.Enroll("dev-1");
        using var agent = _h.Agent("dev-1", 0, fast: false, extra: ["--model", pkgs["1.0.0"], $"--Agent:TrustedKeys:0={Path.Combine(keys, "ops.pub")}"], onLine: _log.Enqueue);
        HubHarness.Until(() => Reported("dev-1")?.GetProperty("active").GetString() == "vibration-fault@1.0.0", "dev-1 online");
        foreach (var (version, reason) in new[] { ("1.1.0", "does not match the announced"), ("1.2.0", "not trusted") })
        {
            await _h.Api.PostAsJsonAsync("/api/devices/dev-1/desired", new { model = $"vibration-fault@{version}" });
            HubHarness.Until(() => Reported("dev-1")?.GetProperty("version").GetString() == version && Reported("dev-1")?.GetProperty("phase").GetString() == "failed",
                $"dev-1 to refuse {version}", 30_000);
            Assert.Contains(reason, Reported("dev-1")!.Value.GetProperty("reason").GetString(), StringComparison.Ordinal);
            Assert.Equal("vibration-fault@1.0.0", Reported("dev-1")!.Value.GetProperty("active").GetString());
        }

        Assert.False(File.Exists(Path.Combine(_h.AgentData("dev-1"), "updates", "staged.edgepkg")));
    }

    [Fact]
    public async Task A_model_that_breaks_its_latency_bound_in_the_watch_period_is_rolled_back_by_the_device_and_not_tried_again()
    {
        _h.StartHub(null, "--TrustedKeys:0", Setup(out var key));
        var v10 = Signed("1.0.0", key);
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "model", "push", Signed("1.1.0", key), "--hub", _h.HubUrl, "--token", _h.OperatorToken).Code);
        _h.Enroll("dev-2");
        using var agent = _h.Agent("dev-2", 0, fast: false, extra: ["--model", v10], onLine: _log.Enqueue);
        HubHarness.Until(() => Reported("dev-2")?.GetProperty("active").GetString() == "vibration-fault@1.0.0", "dev-2 online");
        Thread.Sleep(2000); // latency figures of the running model, the bound's reference

        // A bound no model can meet: p99 at most a hundredth of the previous model's.
        await _h.Api.PostAsJsonAsync("/api/devices/dev-2/desired", new { model = "vibration-fault@1.1.0", watchSeconds = 60, maxLatencyRatio = 0.01 });
        try
        {
            HubHarness.Until(() => Reported("dev-2")?.GetProperty("phase").GetString() == "rolled-back", "dev-2 to roll back by itself", 120_000);
        }
        catch (Xunit.Sdk.XunitException e)
        {
            Assert.Fail($"{e.Message}; it reported {Reported("dev-2")} and said:\n{string.Join('\n', _log.TakeLast(30))}");
        }
        var r = Reported("dev-2")!.Value;
        Assert.Equal("1.1.0", r.GetProperty("version").GetString());
        Assert.Equal("vibration-fault@1.0.0", r.GetProperty("active").GetString());
        Assert.Contains("p99 latency", r.GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.Equal("config", SlotActive("dev-2", v10));

        // The desired state still names 1.1.0: the device does not try it again, and says why.
        Thread.Sleep(3000);
        Assert.Equal("rolled-back", Reported("dev-2")!.Value.GetProperty("phase").GetString());
        Assert.Equal("vibration-fault@1.0.0", Reported("dev-2")!.Value.GetProperty("active").GetString());
        Assert.Equal("vibration-fault@1.1.0", _h.Device("dev-2").GetProperty("desired").GetString());
    }

    private string Setup(out string privateKey)
    {
        var keys = Path.Combine(_h.Dir.Path, "keys");
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "keys", "create", "ops", "--dir", keys).Code);
        privateKey = Path.Combine(keys, "ops.key");
        return Path.Combine(keys, "ops.pub");
    }

    private string Signed(string version, string key) => _h.SignedVariant(version, key);

    public void Dispose() => _h.Dispose();
}
