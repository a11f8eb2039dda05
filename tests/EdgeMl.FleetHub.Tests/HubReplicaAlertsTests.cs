using System.Text.Json;
using EdgeMl.Protocol.Drift;
using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// Alerts with two hub replicas on one PostgreSQL store behind one Mosquitto: drift (device, group, fleet) and offline
/// alerts are judged by the replica leading that work only, so each event is announced once; when that replica is
/// <c>kill -9</c>ed the other takes over within seconds and announces the next events (issue 13).
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class HubReplicaAlertsTests(PostgresFixture postgres) : IDisposable
{
    private readonly HubHarness _a = new();
    private readonly HubHarness _b = new();

    /// <summary>A drift window of <paramref name="device"/> far off the package's baseline on every feature (major), as the agent sends it.</summary>
    private static string DriftBatch(string device, long seq, DriftBaseline baseline, string model, string version)
    {
        var now = DateTimeOffset.UtcNow;
        var report = new DriftReport { Model = model, Version = version, Baseline = baseline, From = now.AddSeconds(-1), To = now };
        foreach (var f in baseline.Features.Where(f => f.Edges.Count >= 2))
        {
            var sketch = FeatureSketch.For(f);
            var sd = Math.Sqrt(Math.Max(f.Variance, 1e-9));
            for (var i = 0; i < 400; i++) sketch.Add(f.Mean + 6 * sd + i * sd / 100);
            report.Features.Add(sketch.ToData());
        }

        var data = JsonSerializer.Serialize(report, EdgeMl.Protocol.Json.CompactJsonContext.Default.DriftReport);
        return $$"""{"device":"{{device}}","records":[{"boot":"b1","seq":{{seq}},"class":"drift","at":{{now.ToUnixTimeMilliseconds()}},"data":{{data}}}]}""";
    }

    private static void Publish(Mosquitto broker, string topic, string payload, TempDirectory dir)
    {
        var file = Path.Combine(dir.Path, $"payload-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, payload);
        var (code, _, err) = HubHarness.Run("/usr/bin/mosquitto_pub", "-p", HubHarness.Str(broker.Port), "-t", topic, "-f", file, "-q", "1", "-V", "mqttv5");
        Assert.True(code == 0, $"mosquitto_pub {topic}: {err}");
    }

    [Fact]
    public void Drift_and_offline_alerts_come_once_from_the_leading_replica_and_the_other_replica_takes_over_when_it_is_killed()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new Mosquitto().Start();
        var store = postgres.Cluster.CreateDatabase();
        var token = "op_alerts_" + Guid.NewGuid().ToString("N");
        var keys = Path.Combine(_a.Dir.Path, "keys");
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "keys", "create", "ops", "--dir", keys).Code);
        foreach (var (h, id) in new[] { (_a, "hub-a"), (_b, "hub-b") })
        {
            h.StartHub(broker.Url, "--Store", store, "--SharedGroup", "hubs", "--ClientId", id, "--OperatorToken", token,
                "--TrustedKeys:0", Path.Combine(keys, "ops.pub"), "--OfflineAfter", "1s");
            Assert.True(h.WaitSubscribed(30_000), $"{id} did not subscribe at the broker");
        }

        // The registry knows the model (its baseline is what drift is judged against) and the devices' groups.
        var package = _a.SignedVariant("1.0.0", Path.Combine(keys, "ops.key"));
        var push = HubHarness.Run(HubHarness.CliDll, "model", "push", package, "--hub", _a.HubUrl, "--token", token);
        Assert.True(push.Code == 0, push.Err);
        ModelManifest manifest;
        using (var stream = File.OpenRead(package)) manifest = ModelPackage.Read(stream, package).Manifest;
        var baseline = manifest.Baseline ?? throw new InvalidOperationException("the test package has no drift baseline");
        _a.Register("drift-1", group: "line-1");
        _a.Register("drift-2", group: "line-2");
        _a.Register("away-1");
        _a.Register("away-2");

        using var alerts = new MosquittoSub(broker.Port, "edgeml/alerts/#", "alert-watcher", ["-V", "mqttv5"]);
        HubHarness.Until(() =>
        {
            Publish(broker, "edgeml/alerts/probe", "probe", _a.Dir);
            return alerts.Messages.Any(m => m.Topic == "edgeml/alerts/probe");
        }, "the alert watcher to subscribe");

        static bool Said(HubHarness h, string what) => h.HubLog.Any(l => l.Contains(what, StringComparison.Ordinal));
        const string Leading = "judges drift alerts now";
        HubHarness.Until(() => Said(_a, Leading) || Said(_b, Leading), "a replica to lead drift-alerts", 20_000);
        Assert.False(Said(_a, Leading) && Said(_b, Leading), "both replicas led drift-alerts at once");
        var (leader, survivor) = Said(_a, Leading) ? (_a, _b) : (_b, _a);

        List<JsonElement> Drift() => alerts.Messages.Where(m => m.Topic == "edgeml/alerts/drift").Select(m => JsonDocument.Parse(m.Payload).RootElement.Clone()).ToList();
        List<JsonElement> Offline() => alerts.Messages.Where(m => m.Topic == "edgeml/alerts/offline").Select(m => JsonDocument.Parse(m.Payload).RootElement.Clone()).ToList();
        int Scope(string scope) => Drift().Count(d => d.GetProperty("scope").GetString() == scope);
        int Raised(string device) => Offline().Count(o => o.GetProperty("device").GetString() == device && o.GetProperty("state").GetString() == "raised");

        // drift-1's windows in two messages: the shared subscription hands them to either replica; the leader judges.
        Publish(broker, "edgeml/drift-1/drift", DriftBatch("drift-1", 1, baseline, manifest.Name, manifest.Version), _a.Dir);
        Publish(broker, "edgeml/drift-1/drift", DriftBatch("drift-1", 2, baseline, manifest.Name, manifest.Version), _a.Dir);
        HubHarness.Until(() => Scope("drift-1") >= 1 && Scope("group line-1") >= 1 && Scope("fleet") >= 1, "drift alerts for drift-1, its group and the fleet", 30_000);
        Assert.Equal("major", Drift().First(d => d.GetProperty("scope").GetString() == "drift-1").GetProperty("status").GetString());

        // away-1 connects and goes away: after --OfflineAfter, one offline alert.
        Publish(broker, "edgeml/away-1/status", """{"state":"online","boot":"b1"}""", _a.Dir);
        Publish(broker, "edgeml/away-1/status", """{"state":"offline"}""", _a.Dir);
        HubHarness.Until(() => Raised("away-1") >= 1, "an offline alert for away-1", 20_000);

        // The group and fleet drift alerts are in the alert list too, with the scope as subject (device "").
        var listed = leader.Get("/api/alerts?kind=drift&active=true").EnumerateArray().Select(a => a.GetProperty("message").GetString()!).ToList();
        Assert.Contains(listed, m => m.StartsWith("fleet: drift major", StringComparison.Ordinal));

        // The leader dies; the survivor takes over drift-alerts (and offline-alerts) and announces the next events.
        leader.KillHub();
        HubHarness.Until(() => Said(survivor, Leading), "the other replica to take over drift-alerts within 10 s (issue 13)", 10_000);
        Publish(broker, "edgeml/drift-2/drift", DriftBatch("drift-2", 1, baseline, manifest.Name, manifest.Version), _a.Dir);
        HubHarness.Until(() => Scope("drift-2") >= 1 && Scope("group line-2") >= 1, "drift alerts for drift-2 and its group from the survivor", 30_000);
        Publish(broker, "edgeml/away-2/status", """{"state":"online","boot":"b1"}""", _a.Dir);
        Publish(broker, "edgeml/away-2/status", """{"state":"offline"}""", _a.Dir);
        HubHarness.Until(() => Raised("away-2") >= 1, "an offline alert for away-2 from the survivor", 20_000);

        // Each event once: two replicas heard every window and status, one judged it. The fleet was major already when
        // the survivor took over (its alert is in the store): not announced again.
        var why = string.Join("\n", alerts.Messages.Select(m => $"{m.Topic} {m.Payload}"));
        foreach (var scope in new[] { "drift-1", "group line-1", "fleet", "drift-2", "group line-2" }) Assert.True(Scope(scope) == 1, $"{scope}: {Scope(scope)} alerts\n{why}");
        Assert.True(Raised("away-1") == 1 && Raised("away-2") == 1, why);
        Assert.Equal("major", survivor.Device("drift-2").GetProperty("drift").GetString());
    }

    public void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
    }
}
