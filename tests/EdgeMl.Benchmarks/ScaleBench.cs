using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeMl.FleetHub.Store;
using EdgeMl.FleetSim;
using EdgeMl.TestUtilities.Mqtt;
using EdgeMl.TestUtilities.Postgres;
using MQTTnet;
using Npgsql;

namespace EdgeMl.Benchmarks;

/// <summary>
/// <c>./build.sh bench scale</c>: hub replicas (real processes, Release build) on a throwaway PostgreSQL cluster (fsync
/// on) behind a real Mosquitto, with a simulated fleet publishing through it. Prints a table and writes
/// <c>bench-results/scale.json</c>.
/// <para>
/// Ingest rates are <b>drain rates</b>: the replicas are paused (SIGSTOP), the fleet publishes a fixed backlog into the
/// broker (QoS 1, each device waits for its PUBACK), the replicas continue (SIGCONT), and the rate is that backlog over
/// the time until the replicas have stored all of it. On a machine of two cores this keeps the load generator's CPU out of
/// the figure (in production the devices are elsewhere); the broker's and the database's CPU are in it. Each rate is the
/// best of three rounds (other work on a shared machine only ever slows a round down, and the first round of a fresh
/// replica process also pays for its JIT warm-up).
/// </para>
/// </summary>
public static class ScaleBench
{
    private const string Group = "bench";
    private static readonly long RolloutsLease = PostgresHubStore.LeaseKey("rollouts");

    public static async Task<int> RunAsync(Dictionary<string, string> o)
    {
        var outPath = o.GetValueOrDefault("out", "bench-results/scale.json");
        var hubDll = o.GetValueOrDefault("hub-dll", Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll"));
        var devices = int.Parse(o.GetValueOrDefault("devices", "500"), CultureInfo.InvariantCulture);
        var batches = int.Parse(o.GetValueOrDefault("batches", "5"), CultureInfo.InvariantCulture);
        var batch = int.Parse(o.GetValueOrDefault("batch", "200"), CultureInfo.InvariantCulture);
        var load = long.Parse(o.GetValueOrDefault("load", "10000000"), CultureInfo.InvariantCulture);
        // --only store: the store alone; --only ingest: and one replica's drain (quick looks while tuning ingest).
        var only = o.GetValueOrDefault("only", "");
        // --pg-stat: the statements that cost the database most in the empty and the full store (pg_stat_statements).
        var pgStat = o.ContainsKey("pg-stat");
        if (!PostgresCluster.Available || !Mosquitto.Available)
        {
            Console.Error.WriteLine("edgeml-bench scale: needs Debian's postgresql and mosquitto (./build.sh bench scale installs them)");
            return 1;
        }

        var results = new JsonObject();
        var rows = new List<(string Key, string Figure, string Target, string Note)>();
        var total = Stopwatch.StartNew();
        var work = Directory.CreateTempSubdirectory("edgeml-scale-bench-");
        // fsync on, as in production; buffers sized for a store of 10 million records (the default 128 MB is for tiny machines).
        using var cluster = new PostgresCluster(durable: true, "-c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=30min -c maintenance_work_mem=512MB"
            + (pgStat ? " -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all" : ""));
        // The broker holds what devices sent while the replicas are away or behind: no queue limit (Mosquitto's default, 1000
        // messages per session, drops the rest: a real deployment must raise it too).
        using var broker = new Mosquitto(listenerOptions: "max_queued_messages 0").Start();
        var token = "op_bench_" + Guid.NewGuid().ToString("N");
        var replicas = new List<Replica>();
        try
        {
            // 0. The store alone: group commits as the hub's writer makes them (100 devices × 200 records), no MQTT.
            Step("the store alone: 400,000 records in group commits of 100 batches × 200 records");
            var storeRate = StoreAlone(cluster.CreateDatabase(), 400_000);
            results["pg_store_records_per_s"] = Math.Round(storeRate);
            Console.WriteLine($"    {storeRate:N0} records/s");
            if (only == "store") return await WriteAsync(outPath, results).ConfigureAwait(false);

            // 1. One replica, then two, on one store; the same devices.
            var db = cluster.CreateDatabase();
            var a = new Replica("hub-a", hubDll, work.FullName, db, broker.Url, token);
            var b = new Replica("hub-b", hubDll, work.FullName, db, broker.Url, token);
            replicas.AddRange([a, b]);
            a.Start();
            await a.WaitAsync().ConfigureAwait(false);
            Step($"enrolling and connecting {devices} simulated devices");
            await using var fleet = new Fleet(a.Url, token, new Uri(broker.Url));
            await fleet.EnrollAsync("scale-", devices, 16, CancellationToken.None).ConfigureAwait(false);
            await fleet.ConnectAsync(64, CancellationToken.None).ConfigureAwait(false);
            var backlog = (long)devices * batches * batch;
            var cpu = new CpuMeter(cluster, broker);

            Step($"one replica: a backlog of {backlog:N0} records at the broker, drained (3 rounds)");
            var one = await BestDrainAsync(fleet, [a], batches, batch, cpu).ConfigureAwait(false);
            if (only == "ingest")
            {
                results["pg_ingest_records_per_s"] = Math.Round(one.Rate);
                results["pg_ingest_records_per_commit"] = Math.Round(one.PerCommit, 1);
                results["hub_cpu_ms_per_1k_records"] = Math.Round(one.HubCpuMsPer1k, 1);
                results["postgres_cpu_ms_per_1k_records"] = Math.Round(one.PgCpuMsPer1k, 1);
                results["broker_cpu_ms_per_1k_records"] = Math.Round(one.BrokerCpuMsPer1k, 1);
                return await WriteAsync(outPath, results).ConfigureAwait(false);
            }

            b.Start();
            await b.WaitAsync().ConfigureAwait(false);
            Step($"two replicas: the same, split by the shared subscription (3 rounds)");
            var two = await BestDrainAsync(fleet, [a, b], batches, batch, cpu).ConfigureAwait(false);
            results["pg_ingest_records_per_s"] = Math.Round(one.Rate);
            results["pg_ingest_records_per_commit"] = Math.Round(one.PerCommit, 1);
            results["ingest_2_replicas_records_per_s"] = Math.Round(two.Rate);
            results["ingest_ratio_2_vs_1"] = Math.Round(two.Rate / one.Rate, 2);
            results["hub_cpu_ms_per_1k_records"] = Math.Round(one.HubCpuMsPer1k, 1);
            results["postgres_cpu_ms_per_1k_records"] = Math.Round(one.PgCpuMsPer1k, 1);
            results["broker_cpu_ms_per_1k_records"] = Math.Round(one.BrokerCpuMsPer1k, 1);
            rows.Add(("pg_ingest_records_per_s", $"{one.Rate:N0}", "≥ 100,000",
                $"one replica, broker → hub → PostgreSQL; {one.PerCommit:N0} records per commit; the store alone {storeRate:N0}/s"));
            rows.Add(("ingest_ratio_2_vs_1", $"{two.Rate / one.Rate:0.00}", "(report)",
                $"{two.Rate:N0}/s with two replicas on the same {Environment.ProcessorCount} cores as the database and the broker"));
            rows.Add(("cpu per 1k records", $"{one.HubCpuMsPer1k:0} / {one.PgCpuMsPer1k:0} / {one.BrokerCpuMsPer1k:0}", "(sizing)",
                "core-ms per 1,000 records stored: hub replica / PostgreSQL / Mosquitto (one replica)"));

            // 2. A replica killed mid-stream and started again: nothing lost, nothing twice; the other takes the lead.
            Step("kill: devices send (paced), the replica leading the rollout engine is kill -9'ed, then started again");
            var (failover, leaderName) = await KillAndRestartAsync(fleet, cluster, db, replicas).ConfigureAwait(false);
            var (lost, duplicated, acked) = await AccountAsync(fleet, db).ConfigureAwait(false);
            Console.WriteLine($"    {leaderName} killed, the other leads after {failover:0.00} s; {lost} of {acked:N0} records lost, {duplicated} stored twice");
            results["records_acked_by_broker"] = acked;
            results["records_lost"] = lost;
            results["records_duplicated"] = duplicated;
            results["leader_failover_s"] = Math.Round(failover, 2);
            rows.Add(("records_lost", $"{lost}", "0", $"of {acked:N0} acknowledged by the broker over the whole run, a replica killed and restarted mid-stream"));
            rows.Add(("records_duplicated", $"{duplicated}", "0", "rows stored twice for one (device, boot, class, seq)"));
            rows.Add(("leader_failover_s", $"{failover:0.00}", "≤ 10", $"{leaderName} killed → the other replica holds the rollout engine's lock"));
            foreach (var r in replicas) r.Stop();
            replicas.Clear();
            await ForgetSessionsAsync(broker.Url, ["hub-a", "hub-b"]).ConfigureAwait(false);

            // 3. A store holding 10 million records against an empty one, each with one replica, measured back to back.
            var empty = cluster.CreateDatabase();
            var full = cluster.CreateDatabase();
            Step($"full store: {load:N0} records of 2,000 other devices loaded in bulk (COPY-free: generate_series, indexes built after)");
            var loadClock = Stopwatch.StartNew();
            BulkLoad(full, load);
            var loadSeconds = loadClock.Elapsed.TotalSeconds;
            results["load_records"] = load;
            results["load_s"] = Math.Round(loadSeconds, 1);
            double emptyRate, fullRate;
            {
                var e = new Replica("hub-e", hubDll, work.FullName, empty, broker.Url, token, group: "bench-e");
                replicas.Add(e);
                e.Start();
                await e.WaitAsync().ConfigureAwait(false);
                Step("empty store: one replica drains the backlog (3 rounds)");
                emptyRate = (await BestDrainAsync(fleet, [e], batches, batch, cpu).ConfigureAwait(false)).Rate;
                if (pgStat) PrintStatements(empty);
                e.Stop();
                replicas.Clear();
                await ForgetSessionsAsync(broker.Url, ["hub-e"]).ConfigureAwait(false);
            }

            var f = new Replica("hub-f", hubDll, work.FullName, full, broker.Url, token, group: "bench-f");
            replicas.Add(f);
            f.Start();
            await f.WaitAsync().ConfigureAwait(false);
            Step("full store: one replica drains the backlog (3 rounds)");
            fullRate = (await BestDrainAsync(fleet, [f], batches, batch, cpu).ConfigureAwait(false)).Rate;
            if (pgStat) PrintStatements(full);
            results["ingest_empty_records_per_s"] = Math.Round(emptyRate);
            results["ingest_full_records_per_s"] = Math.Round(fullRate);
            results["ingest_ratio_full_vs_empty"] = Math.Round(fullRate / emptyRate, 2);
            rows.Add(("ingest_ratio_full_vs_empty", $"{fullRate / emptyRate:0.00}", "≥ 0.9",
                $"{fullRate:N0}/s into {load:N0} stored records vs {emptyRate:N0}/s into an empty store (loaded in {loadSeconds:0} s)"));

            Step("full store: GET /api/devices/{id}/telemetry (newest 100) of 200 random devices");
            var (median, p95) = await QueryLatencyAsync(f, 200).ConfigureAwait(false);
            results["telemetry_query_ms_full"] = Math.Round(median, 2);
            results["telemetry_query_p95_ms_full"] = Math.Round(p95, 2);
            rows.Add(("telemetry_query_ms_full", $"{median:0.0}", "≤ 20", $"median over HTTP, p95 {p95:0.0} ms, with {load:N0} records stored"));
        }
        finally
        {
            foreach (var r in replicas) r.Stop();
            try
            {
                work.Delete(recursive: true);
            }
            catch (IOException)
            {
            }
        }

        results["bench_s"] = Math.Round(total.Elapsed.TotalSeconds);
        results["cores"] = Environment.ProcessorCount;
        Console.WriteLine();
        Console.WriteLine($"{"key",-28} {"figure",14} {"target",10}  note");
        foreach (var (key, figure, target, note) in rows) Console.WriteLine($"{key,-28} {figure,14} {target,10}  {note}");
        Console.WriteLine($"(this machine: {Environment.ProcessorCount} cores, shared by the hub replicas, PostgreSQL, Mosquitto and the simulated fleet; {total.Elapsed.TotalMinutes:0.0} min)");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
        await File.WriteAllTextAsync(outPath, results.ToJsonString(new JsonSerializerOptions { WriteIndented = true })).ConfigureAwait(false);
        Console.WriteLine($"wrote {outPath}");
        return 0;
    }

    private static void Step(string what) => Console.WriteLine($"==> {what}");

    /// <summary>The ten statements of one database that took the most execution time (pg_stat_statements), then resets them.</summary>
    private static void PrintStatements(string connectionString)
    {
        using var c = new NpgsqlConnection(connectionString);
        c.Open();
        using (var ext = new NpgsqlCommand("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", c)) ext.ExecuteNonQuery();
        using (var q = new NpgsqlCommand("""
            SELECT round(total_exec_time)::bigint, calls, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 150)
            FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            ORDER BY total_exec_time DESC LIMIT 10
            """, c))
        using (var r = q.ExecuteReader())
        {
            while (r.Read()) Console.WriteLine($"      {r.GetInt64(0),8} ms {r.GetInt64(1),8} calls {r.GetInt64(2),10} rows  {r.GetString(3)}");
        }

        using var reset = new NpgsqlCommand("SELECT pg_stat_statements_reset()", c);
        reset.ExecuteNonQuery();
    }

    private static async Task<int> WriteAsync(string outPath, JsonObject results)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
        await File.WriteAllTextAsync(outPath, results.ToJsonString(new JsonSerializerOptions { WriteIndented = true })).ConfigureAwait(false);
        Console.WriteLine($"wrote {outPath} (a part only: --only)");
        return 0;
    }

    /// <summary>Records per second through <see cref="PostgresHubStore.StoreBatches"/> alone.</summary>
    private static double StoreAlone(string connectionString, int records)
    {
        using var store = PostgresHubStore.Open(connectionString);
        var perGroup = 100 * 200;
        var seq = new long[100];
        var clock = new Stopwatch();
        for (var stored = 0; stored < records; stored += perGroup)
        {
            var group = new List<(string, IReadOnlyList<IncomingRecord>)>(100);
            for (var d = 0; d < 100; d++)
            {
                var list = new List<IncomingRecord>(200);
                for (var i = 0; i < 200; i++)
                {
                    var s = ++seq[d];
                    list.Add(new IncomingRecord("b0123456789abcde", s, "telemetry", 1_764_000_000_000 + s, "{\"label\":\"normal\",\"score\":0.95,\"latencyMs\":0.16}"));
                }

                group.Add(($"alone-{d:D5}", list));
            }

            clock.Start();
            store.StoreBatches(group, DateTimeOffset.UtcNow);
            clock.Stop();
        }

        return records / clock.Elapsed.TotalSeconds;
    }

    private sealed record Drain(double Rate, double PerCommit, double HubCpuMsPer1k, double PgCpuMsPer1k, double BrokerCpuMsPer1k);

    private static async Task<Drain> BestDrainAsync(Fleet fleet, IReadOnlyList<Replica> replicas, int batches, int batch, CpuMeter cpu)
    {
        Drain? best = null;
        for (var round = 0; round < 3; round++)
        {
            var d = await DrainAsync(fleet, replicas, batches, batch, cpu).ConfigureAwait(false);
            Console.WriteLine($"    round {round + 1}: {d.Rate:N0} records/s, {d.PerCommit:N0} per commit, CPU ms per 1k records: hub {d.HubCpuMsPer1k:0.0}, PostgreSQL {d.PgCpuMsPer1k:0.0}, broker {d.BrokerCpuMsPer1k:0.0}");
            if (best is null || d.Rate > best.Rate) best = d;
        }

        return best!;
    }

    /// <summary>Pauses the replicas, lets every device publish <paramref name="batches"/> batches into the broker, continues them and times the drain.</summary>
    private static async Task<Drain> DrainAsync(Fleet fleet, IReadOnlyList<Replica> replicas, int batches, int batch, CpuMeter cpu)
    {
        var before = new List<(long Stored, long Commits)>();
        foreach (var r in replicas) before.Add(await r.IngestAsync().ConfigureAwait(false));
        foreach (var r in replicas) r.Signal("STOP");
        var backlog = (long)fleet.Devices.Count * batches * batch;
        try
        {
            await Task.WhenAll(fleet.Devices.Select(async d =>
            {
                for (var i = 0; i < batches; i++) await d.SendTelemetryAsync(batch, CancellationToken.None).ConfigureAwait(false);
            })).ConfigureAwait(false);
        }
        finally
        {
            foreach (var r in replicas) r.Signal("CONT");
        }

        var cpuBefore = cpu.Read(replicas);
        var clock = Stopwatch.StartNew();
        long stored = 0, commits = 0;
        while (true)
        {
            stored = 0;
            commits = 0;
            for (var i = 0; i < replicas.Count; i++)
            {
                var (s, c) = await replicas[i].IngestAsync().ConfigureAwait(false);
                stored += s - before[i].Stored;
                commits += c - before[i].Commits;
            }

            if (stored >= backlog) break;
            if (clock.Elapsed > TimeSpan.FromMinutes(3)) throw new TimeoutException($"the backlog was not drained in 3 minutes ({stored:N0} of {backlog:N0} stored)");
            await Task.Delay(50).ConfigureAwait(false);
        }

        var seconds = clock.Elapsed.TotalSeconds;
        var used = cpu.Read(replicas) - cpuBefore;
        return new Drain(stored / seconds, commits == 0 ? 0 : (double)stored / commits, used.Hub / replicas.Count * 1000 / stored * 1000,
            used.Postgres * 1000 / stored * 1000, used.Broker * 1000 / stored * 1000);
    }

    /// <summary>
    /// Devices send at a steady pace through both replicas; the one holding the rollout engine's lease is killed (SIGKILL)
    /// after 4 s; returns the seconds until the other holds the lease. The killed one is started again 4 s later; the
    /// devices stop after 12 s.
    /// </summary>
    private static async Task<(double Failover, string Leader)> KillAndRestartAsync(Fleet fleet, PostgresCluster cluster, string db, List<Replica> replicas)
    {
        using var stop = new CancellationTokenSource();
        var paced = fleet.PacedAsync(20, TimeSpan.FromMilliseconds(500), stop.Token);
        await Task.Delay(4000).ConfigureAwait(false);
        await using var c = new NpgsqlConnection(db);
        await c.OpenAsync().ConfigureAwait(false);
        string? Holder()
        {
            using var q = new NpgsqlCommand("""
                SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1 AND l.objid::bigint = $2
                """, c);
            q.Parameters.Add(new NpgsqlParameter { Value = (long)((ulong)RolloutsLease >> 32) });
            q.Parameters.Add(new NpgsqlParameter { Value = RolloutsLease & 0xFFFF_FFFFL });
            return q.ExecuteScalar() as string;
        }

        var deadline = Stopwatch.StartNew();
        string? leader;
        while ((leader = Holder()) is null)
        {
            if (deadline.Elapsed > TimeSpan.FromSeconds(20)) throw new TimeoutException("no replica took the rollout engine's lease");
            await Task.Delay(50).ConfigureAwait(false);
        }

        var victim = replicas.Single(r => r.Name == leader);
        var clock = Stopwatch.StartNew();
        victim.Kill();
        string? now;
        while ((now = Holder()) is null || now == leader)
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException("the surviving replica did not take the lead in 60 s");
            await Task.Delay(20).ConfigureAwait(false);
        }

        var failover = clock.Elapsed.TotalSeconds;
        await Task.Delay(TimeSpan.FromSeconds(4) - clock.Elapsed).ConfigureAwait(false);
        victim.Start();
        await victim.WaitAsync().ConfigureAwait(false);
        await Task.Delay(4000).ConfigureAwait(false);
        await stop.CancelAsync().ConfigureAwait(false);
        await paced.ConfigureAwait(false);
        return (failover, leader);
    }

    /// <summary>
    /// Every telemetry record a device had acknowledged by the broker must be stored once: a device's sends are sequential,
    /// so its acknowledged records are seq 1..AckedTelemetry. Waits (≤ 60 s) for the replicas to store what the broker still holds.
    /// </summary>
    private static async Task<(long Lost, long Duplicated, long Acked)> AccountAsync(Fleet fleet, string db)
    {
        var acked = fleet.Devices.ToDictionary(d => d.Id, d => d.AckedTelemetry);
        await using var c = new NpgsqlConnection(db);
        await c.OpenAsync().ConfigureAwait(false);
        var clock = Stopwatch.StartNew();
        long lost;
        while (true)
        {
            lost = 0;
            await using (var q = new NpgsqlCommand("SELECT device, max(seq), count(*) FROM records WHERE class = 'telemetry' AND device LIKE 'scale-%' GROUP BY device", c))
            await using (var r = await q.ExecuteReaderAsync().ConfigureAwait(false))
            {
                var seen = new Dictionary<string, long>();
                while (await r.ReadAsync().ConfigureAwait(false)) seen[r.GetString(0)] = r.GetInt64(2);
                // Stored rows with seq ≤ Acked: count(*) can exceed Acked only by records sent but not yet acknowledged at the stop.
                foreach (var (id, n) in acked) lost += Math.Max(0, n - seen.GetValueOrDefault(id));
            }

            if (lost == 0 || clock.Elapsed > TimeSpan.FromSeconds(60)) break;
            await Task.Delay(250).ConfigureAwait(false);
        }

        if (lost > 0)
        {
            // Exact per seq: rows of seq ≤ Acked.
            lost = 0;
            foreach (var (id, n) in acked)
            {
                await using var q = new NpgsqlCommand("SELECT count(DISTINCT seq) FROM records WHERE class = 'telemetry' AND device = $1 AND seq <= $2", c);
                q.Parameters.Add(new NpgsqlParameter { Value = id });
                q.Parameters.Add(new NpgsqlParameter { Value = n });
                lost += n - (long)(await q.ExecuteScalarAsync().ConfigureAwait(false))!;
            }
        }

        await using var dup = new NpgsqlCommand("SELECT count(*) - count(DISTINCT (device, boot, class, seq)) FROM records", c);
        var duplicated = (long)(await dup.ExecuteScalarAsync().ConfigureAwait(false))!;
        return (lost, duplicated, acked.Values.Sum());
    }

    /// <summary>Ends the broker sessions of replicas that are gone (a clean start with no expiry), so their shared subscriptions stop taking messages.</summary>
    private static async Task ForgetSessionsAsync(string brokerUrl, IEnumerable<string> clientIds)
    {
        var uri = new Uri(brokerUrl);
        foreach (var id in clientIds)
        {
            using var client = new MqttClientFactory().CreateMqttClient();
            await client.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer(uri.Host, uri.Port).WithClientId(id)
                .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).WithCleanStart(true).WithSessionExpiryInterval(0).Build()).ConfigureAwait(false);
            await client.DisconnectAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// <paramref name="count"/> records of 2,000 devices (<c>load-00000</c> …), received over the last 25 days, written
    /// with one INSERT … SELECT FROM generate_series into the day partitions with the records table's key dropped and built
    /// again after (as a restore would); the devices are in the registry.
    /// </summary>
    private static void BulkLoad(string connectionString, long count)
    {
        using (var store = PostgresHubStore.Open(connectionString))
        {
            // The schema, as the hub makes it, and the day partitions of the 25 days loaded (a restore would make them too).
            store.CreatePartitions(DateTimeOffset.UtcNow.AddDays(-26), DateTimeOffset.UtcNow.AddDays(1));
        }

        using var c = new NpgsqlConnection(connectionString + ";Command Timeout=0");
        c.Open();
        void Exec(string sql)
        {
            using var cmd = new NpgsqlCommand(sql, c);
            cmd.ExecuteNonQuery();
        }

        List<string> Strings(string sql)
        {
            using var cmd = new NpgsqlCommand(sql, c);
            using var r = cmd.ExecuteReader();
            var list = new List<string>();
            while (r.Read()) list.Add(r.GetString(0));
            return list;
        }

        const int devices = 2000;
        var perDevice = count / devices;
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var step = 25L * 86_400_000 / perDevice;
        // Every index and key of the records table (and of its partitions), to build again after the load.
        var constraints = Strings("""
            SELECT format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
            FROM pg_constraint WHERE contype IN ('p', 'u') AND conrelid = 'records'::regclass
            """);
        var indexes = Strings("""
            SELECT indexdef FROM pg_indexes WHERE tablename = 'records'
            AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'records'::regclass)
            """);
        foreach (var name in Strings("SELECT conname FROM pg_constraint WHERE contype IN ('p', 'u') AND conrelid = 'records'::regclass")) Exec($"ALTER TABLE records DROP CONSTRAINT \"{name}\"");
        foreach (var name in Strings("SELECT indexname FROM pg_indexes WHERE tablename = 'records'")) Exec($"DROP INDEX \"{name}\"");
        Exec($"""
            INSERT INTO devices (id, grp, created_at, presence, last_seen, records, enrolled_at)
            SELECT 'load-' || lpad(d::text, 5, '0'), 'load', {now}, 'offline', {now}, {perDevice}, {now} FROM generate_series(0, {devices - 1}) d
            """);
        Exec($$"""
            INSERT INTO records (device, boot, class, seq, at, received, data)
            SELECT 'load-' || lpad(d::text, 5, '0'), 'boot' || lpad(d::text, 12, '0'), CASE WHEN s % 60 = 0 THEN 'health' ELSE 'telemetry' END, s,
                   {{now}} - ({{perDevice}} - s) * {{step}} - d, {{now}} - ({{perDevice}} - s) * {{step}},
                   CASE WHEN s % 60 = 0 THEN '{"at":"2026-11-30T00:00:00Z","model":{"name":"vibration-fault","version":"1.0.0","latencyP99Ms":0.5} }'
                        ELSE '{"label":"' || CASE WHEN s % 50 = 0 THEN 'imbalance' ELSE 'normal' END || '","score":0.9' || (s % 10) || ',"latencyMs":0.16}' END
            FROM generate_series(1::bigint, {{perDevice}}) s, generate_series(0::bigint, {{devices - 1}}) d
            """);
        foreach (var sql in constraints.Concat(indexes)) Exec(sql);
        Exec("VACUUM ANALYZE records");
        Exec("ANALYZE devices");
    }

    private static async Task<(double Median, double P95)> QueryLatencyAsync(Replica hub, int count)
    {
        using var http = new HttpClient { BaseAddress = hub.Url };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", hub.Token);
        var random = new Random(13);
        var times = new List<double>();
        for (var i = 0; i < count + 10; i++)
        {
            var device = $"load-{random.Next(2000):D5}";
            var clock = Stopwatch.StartNew();
            var list = await http.GetFromJsonAsync<JsonElement>($"/api/devices/{device}/telemetry?limit=100").ConfigureAwait(false);
            var ms = clock.Elapsed.TotalMilliseconds;
            if (list.GetArrayLength() != 100) throw new InvalidOperationException($"{device}: {list.GetArrayLength()} records, not 100");
            if (i >= 10) times.Add(ms); // the first ones warm up the hub's JIT and connections
        }

        times.Sort();
        return (times[times.Count / 2], times[(int)(times.Count * 0.95)]);
    }

    /// <summary>One hub replica: a Release build of edgeml-hub on the shared store and broker, its log watched for the broker connection.</summary>
    private sealed class Replica(string name, string dll, string work, string store, string broker, string token, string group = Group)
    {
        private readonly ManualResetEventSlim _connected = new();
        private Process? _process;
        private HttpClient? _http;

        public string Name => name;
        public string Token => token;
        public Uri Url { get; } = new($"http://127.0.0.1:{Loopback.FreePort()}");
        public ConcurrentQueue<string> Log { get; } = new();

        public void Start()
        {
            _connected.Reset();
            var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var arg in new[]
                     {
                         dll, "--Data", Path.Combine(work, name), "--Store", $"{store};Application Name={name}", "--Broker", broker, "--SharedGroup", group,
                         "--ClientId", name, "--OperatorToken", token, "--urls", Url.ToString().TrimEnd('/'),
                         "--Logging:LogLevel:Default", "Warning", "--Logging:LogLevel:EdgeMl.FleetHub.Broker", "Information",
                     })
            {
                psi.ArgumentList.Add(arg);
            }

            psi.Environment["DOTNET_gcServer"] = "1";
            _process = Process.Start(psi)!;
            void OnLine(object _, DataReceivedEventArgs e)
            {
                if (e.Data is null) return;
                Log.Enqueue(e.Data);
                if (e.Data.Contains("Connected to external broker", StringComparison.Ordinal)) _connected.Set();
                else if (e.Data.Contains("fail", StringComparison.OrdinalIgnoreCase) || e.Data.Contains("error", StringComparison.OrdinalIgnoreCase)) Console.Error.WriteLine($"{name}: {e.Data}");
            }

            _process.OutputDataReceived += OnLine;
            _process.ErrorDataReceived += OnLine;
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
            _http?.Dispose();
            _http = new HttpClient { BaseAddress = Url, Timeout = TimeSpan.FromSeconds(30) };
            _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        public int Pid => _process?.Id ?? 0;

        public async Task WaitAsync()
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                if (_process!.HasExited) throw new InvalidOperationException($"{name} exited ({_process.ExitCode}): {string.Join("\n", Log.TakeLast(20))}");
                if (_connected.IsSet)
                {
                    try
                    {
                        if ((await _http!.GetAsync("/api/ingest").ConfigureAwait(false)).IsSuccessStatusCode) return;
                    }
                    catch (HttpRequestException)
                    {
                    }
                }

                if (clock.Elapsed > TimeSpan.FromSeconds(90)) throw new TimeoutException($"{name} did not start: {string.Join("\n", Log.TakeLast(20))}");
                await Task.Delay(100).ConfigureAwait(false);
            }
        }

        public async Task<(long Stored, long Commits)> IngestAsync()
        {
            var s = await _http!.GetFromJsonAsync<JsonElement>("/api/ingest").ConfigureAwait(false);
            return (s.GetProperty("stored").GetInt64(), s.GetProperty("commits").GetInt64());
        }

        public void Signal(string signal)
        {
            using var kill = Process.Start("/bin/kill", [$"-{signal}", Pid.ToString(CultureInfo.InvariantCulture)]);
            kill.WaitForExit();
        }

        public void Kill()
        {
            _process!.Kill();
            _process.WaitForExit();
        }

        public void Stop()
        {
            if (_process is { HasExited: false })
            {
                Signal("CONT");
                _process.Kill();
                _process.WaitForExit();
            }

            _process?.Dispose();
            _process = null;
        }
    }

    /// <summary>CPU seconds used so far by the replicas, the PostgreSQL server (all its processes, ended ones too) and the broker.</summary>
    private sealed class CpuMeter(PostgresCluster cluster, Mosquitto broker)
    {
        public readonly record struct Used(double Hub, double Postgres, double Broker)
        {
            public static Used operator -(Used a, Used b) => new(a.Hub - b.Hub, a.Postgres - b.Postgres, a.Broker - b.Broker);
        }

        public Used Read(IEnumerable<Replica> replicas)
        {
            var hub = replicas.Sum(r => Ticks(r.Pid, children: true));
            var pg = Ticks(cluster.PostmasterPid, children: true);
            foreach (var dir in Directory.EnumerateDirectories("/proc"))
            {
                if (int.TryParse(Path.GetFileName(dir), out var pid) && Parent(pid) == cluster.PostmasterPid) pg += Ticks(pid, children: false);
            }

            return new Used(hub / 100.0, pg / 100.0, Ticks(broker.Pid, children: false) / 100.0);
        }

        private static string[]? Stat(int pid)
        {
            try
            {
                var text = File.ReadAllText($"/proc/{pid}/stat");
                return text[(text.LastIndexOf(')') + 2)..].Split(' ');
            }
            catch (IOException)
            {
                return null;
            }
        }

        private static int Parent(int pid) => Stat(pid) is { } s ? int.Parse(s[1], CultureInfo.InvariantCulture) : 0;

        /// <summary>utime + stime (+ cutime + cstime: children that ended) in clock ticks (100 per second).</summary>
        private static long Ticks(int pid, bool children)
        {
            if (pid <= 0 || Stat(pid) is not { } s) return 0;
            long F(int field) => long.Parse(s[field - 3], CultureInfo.InvariantCulture);
            return F(14) + F(15) + (children ? F(16) + F(17) : 0);
        }
    }
}
