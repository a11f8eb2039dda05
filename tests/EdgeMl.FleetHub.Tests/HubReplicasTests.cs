using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Mqtt;
using EdgeMl.TestUtilities.Prometheus;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// Two hub processes (replicas) on one PostgreSQL store behind one Mosquitto, splitting device traffic with
/// <c>--SharedGroup</c>: a device's records are stored once, either replica answers any API call, a replica killed
/// mid-stream loses nothing (started again, or gone for good), and a rollout whose leading replica is killed completes
/// under the other.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class HubReplicasTests(PostgresFixture postgres) : IDisposable
{
    private readonly HubHarness _a = new();
    private readonly HubHarness _b = new();

    [Fact]
    public async Task Two_replicas_on_one_postgres_store_store_each_record_once_answer_any_api_call_and_share_dashboard_sessions_and_model_downloads()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new Mosquitto().Start();
        var (token, keys, _) = StartReplicas(broker, "op_replicas_");

        // A dashboard session signed in on replica a works on replica b (sessions live in the shared store), and signing out on b ends it on a.
        using (var browserA = new HttpClient { BaseAddress = new Uri(_a.HubUrl) })
        using (var browserB = new HttpClient { BaseAddress = new Uri(_b.HubUrl) })
        {
            var signIn = await browserA.PostAsync("/api/session", new StringContent($$"""{"token":"{{token}}"}""", System.Text.Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, signIn.StatusCode);
            var cookie = signIn.Headers.GetValues("Set-Cookie").Single().Split(';')[0];
            var csrf = HubHarness.Json(signIn).GetProperty("csrf").GetString()!;
            browserA.DefaultRequestHeaders.Add("Cookie", cookie);
            browserB.DefaultRequestHeaders.Add("Cookie", cookie);
            Assert.Equal(HttpStatusCode.OK, (await browserB.GetAsync("/api/devices")).StatusCode);
            using var signOut = new HttpRequestMessage(HttpMethod.Delete, "/api/session");
            signOut.Headers.Add("X-CSRF-Token", csrf);
            Assert.Equal(HttpStatusCode.NoContent, (await browserB.SendAsync(signOut)).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await browserA.GetAsync("/api/devices")).StatusCode);
        }

        // Devices send through the broker; the shared subscription hands each batch to one replica or the other.
        var agents = new[] { "rep-1", "rep-2", "rep-3" }.Select(d => (d, _a.Agent(d, 200, fast: true))).ToList();
        foreach (var (_, p) in agents)
        {
            Assert.True(p.WaitForExit(90_000), "an agent did not finish");
            p.Dispose();
        }

        foreach (var (id, _) in agents)
        {
            // 200 predictions and the drift monitor's last window.
            HubHarness.Until(() => _b.Records(id) >= 201, $"{id}'s records through replica b", 60_000);
            Assert.Equal(201, _a.Records(id));
            var stored = _b.Stored(id);
            Assert.Equal(Enumerable.Range(1, 200).Select(i => (long)i), stored.Select(r => r.Seq).Order()); // each once
        }

        // A model pushed to replica a is downloaded, resumed with a Range request, from replica b.
        var package = Path.Combine(_a.Dir.Path, "int8.edgepkg");
        File.Copy(TestPackages.VibrationInt8, package);
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "model", "sign", package, "--key", Path.Combine(keys, "ops.key")).Code);
        var push = HubHarness.Run(HubHarness.CliDll, "model", "push", package, "--hub", _a.HubUrl, "--token", token);
        Assert.True(push.Code == 0, push.Err);
        var bytes = await File.ReadAllBytesAsync(package);
        using var part = new HttpRequestMessage(HttpMethod.Get, "/api/models/vibration-fault/1.0.0/package");
        part.Headers.Range = new RangeHeaderValue(1000, 1999);
        using var response = await _b.Api.SendAsync(part);
        Assert.Equal(HttpStatusCode.PartialContent, response.StatusCode);
        Assert.Equal(bytes[1000..2000], await response.Content.ReadAsByteArrayAsync());
        Assert.Equal(bytes, await _b.Api.GetByteArrayAsync("/api/models/vibration-fault/1.0.0/package"));

        // Either replica answers from the same data. (A rollout whose leading replica is killed:
        // A_replica_leading_a_rollout_killed_mid_stream_… below.)
        foreach (var h in new[] { _a, _b })
        {
            Assert.Equal(201, h.Records("rep-1"));
            Assert.Equal("vibration-fault", h.Get("/api/models").EnumerateArray().Single().GetProperty("name").GetString());
        }
    }

    [Fact]
    public async Task A_mosquitto_restart_under_two_replicas_loses_and_duplicates_nothing_and_presence_and_desired_states_are_right_afterwards()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = PersistentBroker();
        var (token, keys, _) = StartReplicas(broker, "op_restart_");
        var model = PushSignedModel(keys, token);

        _a.Register("idle-1");

        // Agents send in real time (about 8 records a second each) through the broker to either replica.
        const int Count = 100;
        var devices = new[] { "rs-1", "rs-2", "rs-3" };
        var agents = devices.Select(d => _a.Agent(d, Count, fast: false)).ToList();
        // And three simulated devices (edgeml-fleetsim run), which reconnect and send an unacknowledged batch again.
        var simOut = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var report = Path.Combine(_a.Dir.Path, "sim-acked.json");
        using var sim = _a.StartSimulator(broker.Url, token, "rsim", 20, report, simOut);
        foreach (var d in devices) HubHarness.Until(() => _b.Records(d) >= 8, $"{d}'s first records", 30_000);
        HubHarness.Until(() => _b.Records("rsim00000") >= 10, "the simulated devices' first records", 30_000);

        // Mosquitto restarts (SIGTERM, as systemctl restart does). While it is away an operator sets a device's desired model.
        var connectedA = _a.HubLog.Count(l => l.Contains("Connected to external broker", StringComparison.Ordinal));
        var connectedB = _b.HubLog.Count(l => l.Contains("Connected to external broker", StringComparison.Ordinal));
        broker.StopGracefully();
        using (var set = await _b.Api.PostAsync("/api/devices/idle-1/desired", new StringContent($$"""{"model":"{{model}}"}""", System.Text.Encoding.UTF8, "application/json")))
        {
            Assert.True(set.IsSuccessStatusCode, $"setting idle-1's desired model while the broker is away: {(int)set.StatusCode}");
        }

        broker.Start();
        HubHarness.Until(() => _a.HubLog.Count(l => l.Contains("Connected to external broker", StringComparison.Ordinal)) > connectedA
                               && _b.HubLog.Count(l => l.Contains("Connected to external broker", StringComparison.Ordinal)) > connectedB, "both replicas back at the broker");

        // Presence: every running agent online again (its status after the reconnect), as either replica says.
        foreach (var d in devices.Where((_, i) => !agents[i].HasExited))
        {
            HubHarness.Until(() => _a.Device(d).GetProperty("presence").GetString() == "online" && _b.Device(d).GetProperty("presence").GetString() == "online", $"{d} online again");
        }

        // Desired states: the one set while the broker was away is at the broker now (retained, republished by the replicas).
        var (subCode, desired, subErr) = HubHarness.Run("/usr/bin/mosquitto_sub", "-p", HubHarness.Str(broker.Port), "-t", "edgeml/idle-1/state/desired", "-C", "1", "-W", "20");
        Assert.True(subCode == 0, $"no desired state for idle-1 at the broker: {subErr}");
        Assert.Contains(model.Split('@')[1], desired, StringComparison.Ordinal);

        // Records produced == records stored, none twice: the agents kept what the broker delivered to no hub (PUBACK
        // "no matching subscribers" while the replicas were not subscribed again) and sent it again.
        foreach (var p in agents) Assert.True(p.WaitForExit(90_000), "an agent did not finish");
        foreach (var d in devices)
        {
            HubHarness.Until(() => _a.Records(d) >= Count, $"all {Count} records of {d} (have {_a.Records(d)})", 30_000);
            Assert.Equal(Enumerable.Range(1, Count).Select(i => (long)i), _b.Stored(d).Select(r => r.Seq).Order());
            HubHarness.Until(() => _b.Device(d).GetProperty("presence").GetString() == "offline", $"{d} offline after its agent stopped");
        }

        foreach (var p in agents) p.Dispose();

        // The simulator ran through the restart to its --duration: what the broker acknowledged is stored, once, on both.
        Assert.True(sim.WaitForExit(90_000), "the simulator did not finish");
        Assert.True(sim.ExitCode == 0, string.Join("\n", simOut));
        var summary = simOut.Single(l => l.StartsWith("stopped:", StringComparison.Ordinal));
        var resent = long.Parse(System.Text.RegularExpressions.Regex.Match(summary, @"(\d+) batches sent again").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(resent > 0, $"no batch was sent again across the broker restart: {summary}");
        await HubHarness.AssertSimulatedRecordsStoredOnceAsync(report, _a, _b);
    }

    [Fact]
    public async Task A_replica_leading_a_rollout_killed_mid_stream_and_restarted_loses_and_duplicates_nothing_while_the_other_answers_throughout_and_completes_the_rollout()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = PersistentBroker();
        var (token, keys, options) = StartReplicas(broker, "op_kill_");
        var ids = new Dictionary<HubHarness, string> { [_a] = "hub-a", [_b] = "hub-b" };

        // A signed model, and two enrolled devices that never connect: the rollout's waves each wait out the offline time-out.
        var model = PushSignedModel(keys, token);
        _a.Enroll("kr-idle-1");
        _a.Enroll("kr-idle-2");

        // Agents (with their outbox) in real time, and simulated devices (no outbox: what the broker acknowledged is what
        // they produced, reported per device and class when they stop) from the fleet simulator, all through the broker
        // to either replica.
        const int Count = 120;
        var devices = new[] { "kr-1", "kr-2", "kr-3" };
        var agents = devices.Select(d => (d, _a.Agent(d, Count, fast: false))).ToList();
        var simOut = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var report = Path.Combine(_a.Dir.Path, "sim-acked.json");
        var sim = _b.StartSimulator(broker.Url, token, "ks", 15, report, simOut);
        using var polling = new CancellationTokenSource();
        Task<(int Calls, List<string> Failures)>? poller = null;
        try
        {
            foreach (var d in devices) HubHarness.Until(() => _b.Records(d) >= 10, $"{d}'s first records", 30_000);

            // A rollout starts; the replica leading the rollout engine is kill -9ed mid-stream once its first wave started.
            var start = HubHarness.Run(HubHarness.CliDll, "rollout", "start", model, "--devices", "kr-idle-1,kr-idle-2",
                "--waves", "50%,100%", "--watch", "1s", "--offline-timeout", "4s", "--hub", _b.HubUrl, "--token", token);
            Assert.True(start.Code == 0, start.Err);
            var rollout = start.Out.Split(' ', ':')[1];
            static bool Said(HubHarness h, string what) => h.HubLog.Any(l => l.Contains(what, StringComparison.Ordinal));
            HubHarness.Until(() => Said(_a, "wave 1 of 2 started") || Said(_b, "wave 1 of 2 started"), "the first wave to start", 20_000);
            var (leader, survivor) = Said(_a, "wave 1 of 2 started") ? (_a, _b) : (_b, _a);

            // From just before the kill to the end, the survivor's API is called every 100 ms: every call must succeed.
            poller = Task.Run(async () =>
            {
                var failures = new List<string>();
                var calls = 0;
                using var api = new HttpClient { BaseAddress = new Uri(survivor.HubUrl), Timeout = TimeSpan.FromSeconds(10) };
                api.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
                while (!polling.IsCancellationRequested)
                {
                    foreach (var path in new[] { "/api/devices/page", "/api/fleet/summary", "/api/devices/kr-1/telemetry?limit=5", $"/api/rollouts/{rollout}" })
                    {
                        calls++;
                        try
                        {
                            using var r = await api.GetAsync(path, CancellationToken.None);
                            if (r.StatusCode != HttpStatusCode.OK) failures.Add($"{path}: {(int)r.StatusCode}");
                        }
                        catch (HttpRequestException e)
                        {
                            failures.Add($"{path}: {e.Message}");
                        }
                        catch (TaskCanceledException)
                        {
                            failures.Add($"{path}: no answer in 10 s");
                        }
                    }

                    try
                    {
                        await Task.Delay(100, polling.Token);
                    }
                    catch (OperationCanceledException)
                    {
                    }
                }

                return (calls, failures);
            });
            leader.KillHub();

            // The survivor goes on storing what comes next.
            var before = devices.ToDictionary(d => d, d => survivor.Records(d));
            HubHarness.Until(() => devices.All(d => survivor.Records(d) > before[d] + 8), "the surviving replica to store what comes next", 30_000);

            // The killed replica comes back (same client id: the broker hands it what it had not acknowledged).
            leader.StartHub(broker.Url, options(ids[leader]));
            Assert.True(leader.WaitSubscribed(30_000), $"{ids[leader]} did not subscribe again");

            // Records produced == records stored, none twice, read from either replica.
            await AssertAllStoredOnceAsync(agents, Count, sim, simOut, report, survivor, leader);

            // The rollout the killed replica led completes under the survivor; each wave was started once (one leader at a
            // time, and a wave's start is saved before its devices are sent anything: the new leader does not start it again).
            HubHarness.Until(() => survivor.Get($"/api/rollouts/{rollout}").GetProperty("state").GetString() == "completed", "the rollout to complete under the other replica", 60_000);
            Assert.True(Said(survivor, "wave 2 of 2 started"), "the surviving replica did not step the rollout");
            var audit = survivor.Get($"/api/audit?subject={rollout}").EnumerateArray().ToList();
            var waves = audit.Where(e => e.GetProperty("action").GetString() == "rollout.wave").Select(e => e.GetProperty("details").GetString()).ToList();
            var why = string.Join("\n", audit);
            Assert.True(waves.Count(w => w!.StartsWith("wave 2 of 2", StringComparison.Ordinal)) == 1, why);
            Assert.True(waves.Count(w => w!.StartsWith("wave 1 of 2", StringComparison.Ordinal)) == 1, why);

            // The survivor answered every call, from just before the kill to here.
            await polling.CancelAsync();
            var (calls, failures) = await poller;
            Assert.True(failures.Count == 0, $"{failures.Count} of {calls} API calls to the surviving replica failed:\n{string.Join("\n", failures.Take(20))}");
            Assert.True(calls > 40, $"only {calls} API calls were made");
        }
        finally
        {
            await polling.CancelAsync();
            if (poller is not null) await poller.ContinueWith(_ => { }, TaskScheduler.Default);
            StopAll(agents.Select(a => a.Item2).Append(sim));
        }
    }

    [Fact]
    public async Task A_replica_that_dies_for_good_loses_nothing_because_the_survivor_takes_over_its_broker_session()
    {
        // Mosquitto keeps handing a dead replica's persistent session its share of the shared subscription; the survivor
        // must take those messages over (ExternalBrokerClient.Adoption.cs), or they wait in a queue nobody reads.
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = PersistentBroker();
        var metricsPort = Mosquitto.FreePort();
        var (token, _, _) = StartReplicas(broker, "op_gone_", "--MetricsPort", HubHarness.Str(metricsPort), "--MetricsSampleSeconds", "0");

        const int Count = 120;
        var devices = new[] { "gone-1", "gone-2", "gone-3" };
        var agents = devices.Select(d => (d, _b.Agent(d, Count, fast: false))).ToList();
        var simOut = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var report = Path.Combine(_b.Dir.Path, "sim-acked.json");
        var sim = _b.StartSimulator(broker.Url, token, "gs", 12, report, simOut);
        try
        {
            foreach (var d in devices) HubHarness.Until(() => _b.Records(d) >= 10, $"{d}'s first records", 30_000);
            _a.KillHub(); // and it never comes back

            HubHarness.Until(() => _b.HubLog.Any(l => l.Contains("Took over the broker session of replica hub-a", StringComparison.Ordinal)),
                "the survivor to take over the dead replica's broker session", 30_000);
            // What came after the take-over went to the survivor alone (the dead session was ended): all of it, each once.
            await AssertAllStoredOnceAsync(agents, Count, sim, simOut, report, _b);

            // Counted on /metrics: one session taken over, no failed try.
            using var scraper = new HttpClient();
            var metrics = PrometheusText.Parse(await scraper.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics"));
            Assert.Equal(1, metrics.Value("edgeml_broker_sessions_taken_over_total"));
            Assert.Equal(0, metrics.Value("edgeml_broker_session_takeover_failures_total"));
        }
        finally
        {
            StopAll(agents.Select(a => a.Item2).Append(sim));
        }
    }

    /// <summary>
    /// A fresh database, an operator key (in <c>{a's dir}/keys</c>) and replicas a and b (<c>hub-a</c>, <c>hub-b</c>) in
    /// shared group <c>hubs</c> at <paramref name="broker"/>, both subscribed. Returns the operator token and the keys' folder.
    /// </summary>
    private (string Token, string Keys, Func<string, string[]> Options) StartReplicas(Mosquitto broker, string tokenPrefix, params string[] moreForB)
    {
        var store = postgres.Cluster.CreateDatabase();
        var token = tokenPrefix + Guid.NewGuid().ToString("N");
        var keys = Path.Combine(_a.Dir.Path, "keys");
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "keys", "create", "ops", "--dir", keys).Code);
        string[] Options(string id) => ["--Store", store, "--SharedGroup", "hubs", "--ClientId", id, "--OperatorToken", token, "--TrustedKeys:0", Path.Combine(keys, "ops.pub")];
        foreach (var (h, id) in new[] { (_a, "hub-a"), (_b, "hub-b") })
        {
            h.StartHub(broker.Url, [.. Options(id), .. h == _b ? moreForB : []]);
            Assert.True(h.WaitSubscribed(30_000), $"{id} did not subscribe at the broker");
        }

        return (token, keys, Options);
    }

    /// <summary>Mosquitto with persistence on, as production needs (docs/scale.md), its files in a's directory.</summary>
    private Mosquitto PersistentBroker()
    {
        var persist = Path.Combine(_a.Dir.Path, "mosquitto");
        Directory.CreateDirectory(persist);
        return new Mosquitto(persistDirectory: persist).Start();
    }

    /// <summary>The bundled package as version 1.0.0, signed and pushed to replica a; its NAME@VERSION.</summary>
    private string PushSignedModel(string keys, string token)
    {
        var package = _a.SignedVariant("1.0.0", Path.Combine(keys, "ops.key"));
        var push = HubHarness.Run(HubHarness.CliDll, "model", "push", package, "--hub", _a.HubUrl, "--token", token);
        Assert.True(push.Code == 0, push.Err);
        using var stream = File.OpenRead(package);
        var m = EdgeMl.Protocol.Packages.ModelPackage.Read(stream, package).Manifest;
        return $"{m.Name}@{m.Version}";
    }

    /// <summary>Kills what is still running of <paramref name="processes"/> (a failed test leaves no process behind) and disposes them.</summary>
    private static void StopAll(IEnumerable<Process> processes)
    {
        foreach (var p in processes)
        {
            try
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
            }

            p.Dispose();
        }
    }

    /// <summary>
    /// Records produced == records stored, none twice, read through each of <paramref name="replicas"/>, once the agents
    /// (each <paramref name="count"/> predictions: seq 1..count) and the simulator have finished; the simulated devices'
    /// telemetry and health are seq 1..N of what the broker acknowledged (the simulator's <c>--report</c>).
    /// </summary>
    private static async Task AssertAllStoredOnceAsync(List<(string Id, Process Process)> agents, int count, Process sim,
        System.Collections.Concurrent.ConcurrentQueue<string> simOut, string report, params HubHarness[] replicas)
    {
        foreach (var (_, p) in agents) Assert.True(p.WaitForExit(90_000), "an agent did not finish");
        Assert.True(sim.WaitForExit(60_000), "the simulator did not finish");
        Assert.True(sim.ExitCode == 0, string.Join("\n", simOut));
        foreach (var (d, _) in agents)
        {
            HubHarness.Until(() => replicas[0].Records(d) >= count, $"all {count} records of {d} (have {replicas[0].Records(d)})", 30_000);
            foreach (var h in replicas) Assert.Equal(Enumerable.Range(1, count).Select(i => (long)i), h.Stored(d).Select(r => r.Seq).Order());
        }

        await HubHarness.AssertSimulatedRecordsStoredOnceAsync(report, replicas);
    }

    [Fact]
    public void A_store_that_cannot_be_opened_stops_the_hub_with_one_line()
    {
        var hub = Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll");
        var bad = HubHarness.Run(hub, "--Store", "Hots=nowhere", "--Data", _a.HubData, "--urls", _a.HubUrl);
        Assert.Equal(2, bad.Code); // a value --Store can never take: a usage error
        Assert.StartsWith("edgeml-hub: --Store is not a PostgreSQL connection string", bad.Err.Trim(), StringComparison.Ordinal);
        Assert.Single(bad.Err.Trim().Split('\n'));

        var away = HubHarness.Run(hub, "--Store", postgres.Cluster.ConnectionString("no_such_database"), "--Data", _a.HubData, "--urls", _a.HubUrl);
        Assert.Equal(1, away.Code);
        Assert.StartsWith("edgeml-hub: cannot open the store (--Store):", away.Err.Trim(), StringComparison.Ordinal);
        Assert.Contains("no_such_database", away.Err, StringComparison.Ordinal);
        Assert.Single(away.Err.Trim().Split('\n'));
    }

    public void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
    }
}
