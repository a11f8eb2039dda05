using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using EdgeMl.TestUtilities;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// Staged rollouts end to end: a hub, enrolled agent processes on simulated sensors, signed packages, the operator's
/// CLI. A good version goes wave by wave; a version that disagrees with the running one fails its first wave's gate,
/// that wave goes back, the rest never get it; the audit trail shows all of it; a hub restart resumes a rollout.
/// </summary>
public sealed class RolloutTests : IDisposable
{
    private const string Group = "line-3";
    private readonly HubHarness _h = new();
    private readonly ConcurrentQueue<string> _log = new();
    private string _keys = "";
    private string _pub = "";

    private string Cli(params string[] args)
    {
        var (code, stdout, stderr) = HubHarness.Run(HubHarness.CliDll, [.. args, "--hub", _h.HubUrl, "--token", _h.OperatorToken]);
        Assert.True(code == 0, $"edgeml {string.Join(' ', args)} → {code}: {stderr}{stdout}");
        return stdout;
    }

    /// <summary>A hub that trusts the operator's key, and the package versions: signed and pushed.</summary>
    private Dictionary<string, string> Setup(params (string Version, bool Reversed)[] versions)
    {
        _keys = Path.Combine(_h.Dir.Path, "keys");
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "keys", "create", "ops", "--dir", _keys).Code);
        _pub = Path.Combine(_keys, "ops.pub");
        _h.StartHub(null, "--TrustedKeys:0", _pub, "--RolloutTickMs", "200");
        var packages = new Dictionary<string, string>();
        foreach (var (version, reversed) in versions)
        {
            var path = _h.SignedVariant(version, Path.Combine(_keys, "ops.key"), reversed);
            Cli("model", "push", path);
            packages[version] = path;
        }

        return packages;
    }

    private Process StartAgent(string device, string package, IReadOnlyDictionary<string, string>? env = null) =>
        _h.Agent(device, 0, fast: false, healthEvery: 1, extra: ["--model", package, $"--Agent:TrustedKeys:0={_pub}"], onLine: l => _log.Enqueue($"{device}: {l}"), env: env);

    private JsonElement? Reported(string device) =>
        _h.Device(device).TryGetProperty("reported", out var r) && r.ValueKind == JsonValueKind.Object ? r : null;

    private string? ActiveOf(string device) => Reported(device)?.GetProperty("active").GetString();

    private JsonElement Rollout(string id) => _h.Get($"/api/rollouts/{id}");

    private string Diagnostics(string id) => $"rollout: {Rollout(id)}\nagents said:\n{string.Join('\n', _log.TakeLast(40))}";

    private static string IdOf(string startOutput) => startOutput.Split(' ', ':')[1];

    [Fact]
    public void A_good_version_goes_wave_by_wave_a_disagreeing_one_stops_at_its_first_wave_and_goes_back_and_the_audit_shows_it()
    {
        var pkgs = Setup(("1.0.0", false), ("1.1.0", false), ("1.2.0", true));
        var devices = new[] { "press-1", "press-2", "press-3", "press-4" };
        foreach (var d in devices)
        {
            _h.Enroll(d, Group);
            StartAgent(d, pkgs["1.0.0"]);
        }

        foreach (var d in devices) HubHarness.Until(() => ActiveOf(d) == "vibration-fault@1.0.0", $"{d} to report 1.0.0 active");

        // A good version: 25 % first, gates on the shadow figures, then everyone.
        var good = IdOf(Cli("rollout", "start", "vibration-fault@1.1.0", "--to", Group, "--waves", "25%,100%",
            "--gate", "agreement>=0.95", "--gate", "errors<=1%", "--gate", "latency_p99<=10x", "--soak", "3s", "--watch", "2s"));
        HubHarness.Until(() => Rollout(good).GetProperty("state").GetString() is not "running", "the good rollout to end", 120_000);
        Assert.True(Rollout(good).GetProperty("state").GetString() == "completed", Diagnostics(good));
        var waves = Rollout(good).GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(1, waves.Count(w => w.GetProperty("wave").GetInt32() == 0 && w.GetProperty("outcome").GetString() == "activated"));
        var firstWaveGates = waves.First(w => w.GetProperty("wave").GetInt32() == 0).GetProperty("gates").EnumerateArray().ToList();
        Assert.Equal(3, firstWaveGates.Count);
        Assert.All(firstWaveGates, g => Assert.True(g.GetProperty("pass").GetBoolean(), g.ToString()));
        Assert.Equal(1.0, firstWaveGates[0].GetProperty("value").GetDouble()); // the same model under another version agrees fully
        foreach (var d in devices)
        {
            Assert.Equal("vibration-fault@1.1.0", ActiveOf(d));
            Assert.Equal("vibration-fault@1.0.0", Reported(d)!.Value.GetProperty("previous").GetString());
        }

        // A version that disagrees (its labels are reversed): its first wave (one device) fails the agreement gate.
        var bad = IdOf(Cli("rollout", "start", "vibration-fault@1.2.0", "--to", Group, "--waves", "25%,100%", "--gate", "agreement>=0.95", "--soak", "3s"));
        HubHarness.Until(() => Rollout(bad).GetProperty("state").GetString() is not "running", "the bad rollout to stop", 90_000);
        var r = Rollout(bad);
        Assert.True(r.GetProperty("state").GetString() == "halted", Diagnostics(bad));
        Assert.Contains("agreement>=0.95", r.GetProperty("reason").GetString(), StringComparison.Ordinal);
        var gate = r.GetProperty("results")[0].GetProperty("gates")[0];
        Assert.False(gate.GetProperty("pass").GetBoolean());
        Assert.True(gate.GetProperty("value").GetDouble() < 0.5, gate.ToString());
        var states = r.GetProperty("devices").EnumerateArray().ToDictionary(d => d.GetProperty("id").GetString()!, d => d);
        var wave1 = states.Values.Where(d => d.GetProperty("wave").GetInt32() == 0).Select(d => d.GetProperty("id").GetString()!).ToList();
        Assert.Single(wave1);
        HubHarness.Until(() => Rollout(bad).GetProperty("devices").EnumerateArray()
            .Where(d => d.GetProperty("wave").GetInt32() == 0).All(d => d.GetProperty("phase").GetString() == "rolled-back"), "wave 1 to be rolled back");
        foreach (var d in devices)
        {
            // Wave 1 is back on 1.1.0 (it had only shadowed 1.2.0); the others never received 1.2.0.
            Assert.Equal("vibration-fault@1.1.0", ActiveOf(d));
            if (wave1.Contains(d)) continue;
            Assert.Equal("pending", states[d].GetProperty("phase").GetString());
            Assert.Equal("vibration-fault@1.1.0", _h.Device(d).GetProperty("desired").GetString());
            Assert.NotEqual("1.2.0", Reported(d)!.Value.GetProperty("version").GetString());
        }

        var status = Cli("rollout", "status", bad);
        Assert.Contains("halted", status, StringComparison.Ordinal);
        Assert.Contains("FAIL", status, StringComparison.Ordinal);
        Assert.Contains("rolled-back", status, StringComparison.Ordinal);

        // The operator rolls the whole group back to what it ran before 1.1.0: from the other slot, no download.
        Assert.Contains("4 device(s)", Cli("rollback", Group), StringComparison.Ordinal);
        foreach (var d in devices) HubHarness.Until(() => ActiveOf(d) == "vibration-fault@1.0.0", $"{d} back on 1.0.0", 45_000);

        // The audit trail: who pushed (and which key signed), started, what the gates said, what was halted, which device ran what.
        var audit = JsonDocument.Parse(Cli("audit", "--json")).RootElement.EnumerateArray().ToList();
        string[] Actions(string a) => audit.Where(e => e.GetProperty("action").GetString() == a).Select(e => e.GetProperty("details").GetString()!).ToArray();
        Assert.Equal(3, Actions("model.push").Length);
        Assert.All(Actions("model.push"), d => Assert.Contains("signed by key", d, StringComparison.Ordinal));
        Assert.Equal(2, Actions("rollout.start").Length);
        Assert.All(audit.Where(e => e.GetProperty("action").GetString() == "rollout.start"), e => Assert.Equal("bootstrap", e.GetProperty("actor").GetString()));
        Assert.Single(Actions("rollout.complete"));
        Assert.Single(Actions("rollout.halt"));
        Assert.Contains(Actions("rollout.gate"), d => d.Contains("FAIL", StringComparison.Ordinal));
        Assert.Single(Actions("rollback"));
        var modelChanges = audit.Where(e => e.GetProperty("action").GetString() == "device.model").ToList();
        foreach (var d in devices)
        {
            var mine = modelChanges.Where(e => e.GetProperty("device").GetString() == d).Select(e => e.GetProperty("details").GetString()!).ToList();
            Assert.Contains(mine, x => x.EndsWith("vibration-fault@1.0.0 → vibration-fault@1.1.0", StringComparison.Ordinal));
            Assert.Contains(mine, x => x.EndsWith("vibration-fault@1.1.0 → vibration-fault@1.0.0", StringComparison.Ordinal));
            Assert.DoesNotContain(mine, x => x.Contains("→ vibration-fault@1.2.0", StringComparison.Ordinal));
        }

        var csv = Path.Combine(_h.Dir.Path, "audit.csv");
        Cli("audit", "--rollout", bad, "--csv", "--out", csv);
        var lines = File.ReadAllLines(csv);
        Assert.Equal("at,actor,action,subject,device,details", lines[0]);
        Assert.Contains(lines, l => l.Contains(",rollout.halt,", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains("vibration-fault@1.1.0 ", StringComparison.Ordinal) && l.Contains(",rollout.start,", StringComparison.Ordinal));
    }

    [Fact]
    public void A_hub_restart_in_the_middle_of_a_rollout_resumes_it()
    {
        var pkgs = Setup(("1.0.0", false), ("1.1.0", false));
        var devices = new[] { "mill-1", "mill-2", "mill-3" };
        foreach (var d in devices)
        {
            _h.Enroll(d, Group);
            StartAgent(d, pkgs["1.0.0"]);
        }

        foreach (var d in devices) HubHarness.Until(() => ActiveOf(d) == "vibration-fault@1.0.0", $"{d} to report 1.0.0 active");
        var id = IdOf(Cli("rollout", "start", "vibration-fault@1.1.0", "--to", Group, "--waves", "34%,100%", "--gate", "agreement>=0.9", "--soak", "4s", "--watch", "1s"));
        HubHarness.Until(() => Rollout(id).GetProperty("stage").ValueKind == JsonValueKind.String && Rollout(id).GetProperty("stage").GetString() == "shadow", "the first wave to shadow");
        _h.KillHub();
        Thread.Sleep(1500);
        _h.StartHub(null, "--TrustedKeys:0", _pub, "--RolloutTickMs", "200");
        HubHarness.Until(() => Rollout(id).GetProperty("state").GetString() is not "running", "the rollout to end after the restart", 120_000);
        Assert.True(Rollout(id).GetProperty("state").GetString() == "completed", Diagnostics(id));
        foreach (var d in devices) Assert.Equal("vibration-fault@1.1.0", ActiveOf(d));
        var audit = JsonDocument.Parse(Cli("audit", "--rollout", id, "--json")).RootElement.EnumerateArray().ToList();
        Assert.Single(audit, e => e.GetProperty("action").GetString() == "rollout.start");
        Assert.Equal(2, audit.Count(e => e.GetProperty("action").GetString() == "rollout.wave")); // each wave started once
    }

    [Fact]
    public void A_wave_whose_sends_a_stopped_hub_did_not_finish_is_sent_by_the_next_one_and_started_once()
    {
        var pkgs = Setup(("1.0.0", false), ("1.1.0", false));
        var devices = new[] { "mill-1", "mill-2" };
        foreach (var d in devices)
        {
            _h.Enroll(d, Group);
            StartAgent(d, pkgs["1.0.0"]);
        }

        foreach (var d in devices) HubHarness.Until(() => ActiveOf(d) == "vibration-fault@1.0.0", $"{d} to report 1.0.0 active");
        var id = IdOf(Cli("rollout", "start", "vibration-fault@1.1.0", "--to", Group, "--waves", "100%", "--watch", "2s", "--offline-timeout", "60s"));
        HubHarness.Until(() => Rollout(id).GetProperty("stage").ValueKind == JsonValueKind.String, "the wave to start");
        _h.KillHub();

        // As if the hub had died while sending: the wave's start is saved, but its devices are not marked sent.
        using (var store = new EdgeMl.FleetHub.Store.LiteDbHubStore(_h.HubData))
        {
            var json = System.Text.Json.Nodes.JsonNode.Parse(store.RolloutJsons().Single())!;
            Assert.Equal("running", json["state"]!.GetValue<string>());
            foreach (var d in json["devices"]!.AsArray())
            {
                d!["sentAt"] = null;
                d["phase"] = "pending";
            }

            store.SaveRollout(id, "running", json.ToJsonString());
        }

        _h.StartHub(null, "--TrustedKeys:0", _pub, "--RolloutTickMs", "200");
        HubHarness.Until(() => _h.HubLog.Any(l => l.Contains("was started by a replica that stopped while sending; sent the 2 device(s)", StringComparison.Ordinal)),
            "the hub to send the devices the stopped one had not");
        HubHarness.Until(() => Rollout(id).GetProperty("state").GetString() is not "running", "the rollout to end", 120_000);
        Assert.True(Rollout(id).GetProperty("state").GetString() == "completed", Diagnostics(id));
        foreach (var d in devices) Assert.Equal("vibration-fault@1.1.0", ActiveOf(d));
        var audit = JsonDocument.Parse(Cli("audit", "--rollout", id, "--json")).RootElement.EnumerateArray().ToList();
        Assert.Single(audit, e => e.GetProperty("action").GetString() == "rollout.wave"); // not started again
    }

    public void Dispose() => _h.Dispose();
}
