using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using LiteDB;

namespace EdgeMl.FleetSim;

/// <summary>
/// <c>./build.sh bench hub</c>: a real hub process on loopback, a simulated fleet, and one real agent. Prints a
/// table and writes <c>bench-results/hub.json</c>. The baseline, measured in the same run, is what the issue
/// warned about: LiteDB with one document per record and a unique key.
/// </summary>
public static class HubBench
{
    public static async Task<int> RunAsync(Dictionary<string, string> o, CancellationToken ct)
    {
        var hubDll = FleetSimProgram.Need(o, "hub-dll");
        var agent = FleetSimProgram.Need(o, "agent");
        var model = FleetSimProgram.Need(o, "model");
        var outPath = o.GetValueOrDefault("out", "bench-results/hub.json");
        var devices = FleetSimProgram.Int(o, "devices", 1000);
        var seconds = FleetSimProgram.Int(o, "seconds", 20);
        var connected = FleetSimProgram.Int(o, "connected", 10_000);
        var hold = FleetSimProgram.Int(o, "hold", 30);
        var backlog = FleetSimProgram.Int(o, "backlog", 86_400);

        var work = Directory.CreateTempSubdirectory("edgeml-hub-bench-");
        var mqtt = Loopback.FreePort();
        var http = Loopback.FreePort();
        var hubUrl = new Uri($"http://127.0.0.1:{http}");
        var broker = new Uri($"mqtt://127.0.0.1:{mqtt}");
        var results = new JsonObject();
        var rows = new List<(string Key, string Figure, string Target, string Note)>();

        Step("baseline: LiteDB, one document per record with a unique key (the design the issue ruled out)");
        var baseline = NaiveLiteDb(Path.Combine(work.FullName, "naive.db"), 100_000);
        results["baseline_records_per_s"] = Math.Round(baseline);

        using var hub = HubProcess.Start(hubDll, Path.Combine(work.FullName, "hub"), mqtt, hubUrl);
        try
        {
            var token = await HubProcess.WaitAsync(Path.Combine(work.FullName, "hub"), hubUrl, ct).ConfigureAwait(false);

            // 1. Ingest: 1,000 devices. First as fast as the hub takes it (each device sends 200-record batches back
            //    to back: the most the hub stores per second), then at a fixed offered load of about the target
            //    (each device 20 records every 200 ms: 100 records/s, 100,000/s in all) for the latency under it.
            Step($"ingest: enrolling and connecting {devices} simulated devices");
            await using (var fleet = new Fleet(hubUrl, token, broker))
            {
                await fleet.EnrollAsync("ing-", devices, 32, ct).ConfigureAwait(false);
                await fleet.ConnectAsync(64, ct).ConfigureAwait(false);
                double rate;
                using (var stop = CancellationTokenSource.CreateLinkedTokenSource(ct))
                {
                    var flood = fleet.FloodAsync(200, stop.Token);
                    await Task.Delay(TimeSpan.FromSeconds(3), ct).ConfigureAwait(false); // warm-up
                    Step($"ingest: as fast as it goes, {seconds} s");
                    var before = await fleet.IngestAsync().ConfigureAwait(false);
                    var clock = Stopwatch.StartNew();
                    await Task.Delay(TimeSpan.FromSeconds(seconds), ct).ConfigureAwait(false);
                    var after = await fleet.IngestAsync().ConfigureAwait(false);
                    var elapsed = clock.Elapsed.TotalSeconds;
                    await stop.CancelAsync().ConfigureAwait(false);
                    await flood.ConfigureAwait(false);
                    var stored = after.GetProperty("stored").GetInt64() - before.GetProperty("stored").GetInt64();
                    var commits = after.GetProperty("commits").GetInt64() - before.GetProperty("commits").GetInt64();
                    rate = stored / elapsed;
                    results["ingest_records_per_s"] = Math.Round(rate);
                    results["ingest_records_per_commit"] = commits == 0 ? 0 : Math.Round((double)stored / commits, 1);
                    results["saturated_e2e_p99_ms"] = after.GetProperty("e2eP99Ms").GetDouble();
                    results["ingest_vs_baseline"] = Math.Round(rate / baseline, 2);
                    rows.Add(("ingest_records_per_s", $"{rate:N0}", "≥ 100,000", $"{rate / baseline:0.0}x the baseline ({baseline:N0}/s); {stored / Math.Max(1, commits):N0} records per commit"));
                }

                var perDevice = 100.0;
                Step($"ingest: offered {devices * perDevice:N0} records/s for {seconds} s (latency)");
                using (var stop = CancellationTokenSource.CreateLinkedTokenSource(ct))
                {
                    var paced = fleet.PacedAsync(20, TimeSpan.FromMilliseconds(200), stop.Token);
                    await Task.Delay(TimeSpan.FromSeconds(3), ct).ConfigureAwait(false); // settle
                    var before = await fleet.IngestAsync().ConfigureAwait(false);
                    var clock = Stopwatch.StartNew();
                    var p99s = new List<double>();
                    var p50s = new List<double>();
                    while (clock.Elapsed < TimeSpan.FromSeconds(seconds))
                    {
                        await Task.Delay(TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
                        var s = await fleet.IngestAsync().ConfigureAwait(false); // the hub's window: the last 131,072 records
                        p99s.Add(s.GetProperty("e2eP99Ms").GetDouble());
                        p50s.Add(s.GetProperty("e2eP50Ms").GetDouble());
                    }

                    var after = await fleet.IngestAsync().ConfigureAwait(false);
                    var achieved = (after.GetProperty("stored").GetInt64() - before.GetProperty("stored").GetInt64()) / clock.Elapsed.TotalSeconds;
                    await stop.CancelAsync().ConfigureAwait(false);
                    await paced.ConfigureAwait(false);
                    p99s.Sort();
                    p50s.Sort();
                    var p99 = p99s[p99s.Count / 2];
                    results["e2e_p99_ms"] = p99;
                    results["e2e_p99_worst_ms"] = p99s[^1];
                    results["e2e_p50_ms"] = p50s[p50s.Count / 2];
                    results["e2e_load_records_per_s"] = Math.Round(achieved);
                    rows.Add(("e2e_p99_ms", $"{p99:0}", "≤ 250", $"at {achieved:N0} records/s stored; p50 {p50s[p50s.Count / 2]:0} ms; worst 1-s window p99 {p99s[^1]:0} ms; saturated p99 {results["saturated_e2e_p99_ms"]} ms"));
                }
            }

            // 2. Backlog: one real agent with a day of records at 1 Hz in its outbox, then the link comes back.
            Step($"backlog: one real agent stores {backlog:N0} records with no uplink");
            var agentData = Path.Combine(work.FullName, "agent");
            var fill = Stopwatch.StartNew();
            await RunToEndAsync(agent, ["run", "--model", model, "--sensor", "sim:vibration", "--fast", "--count", backlog.ToString(CultureInfo.InvariantCulture), "--data", agentData, "--quiet", "--results", Path.Combine(work.FullName, "results.jsonl")], ct).ConfigureAwait(false);
            var fillSeconds = fill.Elapsed.TotalSeconds;
            await using (var api = new Fleet(hubUrl, token, broker))
            {
                using var client = new HttpClient { BaseAddress = hubUrl };
                client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
                using var reg = await client.PostAsJsonAsync("/api/devices", new { id = "backlog-1" }, ct).ConfigureAwait(false);
                var enrollToken = (await reg.Content.ReadFromJsonAsync<JsonElement>(ct).ConfigureAwait(false)).GetProperty("token").GetString()!;
                await RunToEndAsync(agent, ["enroll", "--hub", $"127.0.0.1:{http}", "--token", enrollToken, "--data", agentData], ct).ConfigureAwait(false);
                Step("backlog: agent reconnects; draining");
                var drain = Stopwatch.StartNew();
                using var running = Start(agent, ["run", "--model", model, "--sensor", "sim:vibration", "--data", agentData, "--quiet", "--results", Path.Combine(work.FullName, "results2.jsonl")]);
                while (await api.RecordsAsync("backlog-1").ConfigureAwait(false) < backlog)
                {
                    if (drain.Elapsed > TimeSpan.FromMinutes(5)) throw new TimeoutException("backlog not drained in 5 minutes");
                    await Task.Delay(100, ct).ConfigureAwait(false);
                }

                var drainSeconds = drain.Elapsed.TotalSeconds;
                running.Kill();
                await running.WaitForExitAsync(ct).ConfigureAwait(false);
                results["backlog_records"] = backlog;
                results["backlog_fill_s"] = Math.Round(fillSeconds, 1);
                results["backlog_drain_s"] = Math.Round(drainSeconds, 1);
                rows.Add(("backlog_drain_s", $"{drainSeconds:0.0}", "≤ 30", $"{backlog:N0} records, {backlog / drainSeconds:N0}/s (outbox filled in {fillSeconds:0} s)"));
            }

            // 3. Connected: many devices held connected, health every 10 s.
            Step($"connected: enrolling {connected:N0} devices");
            await using (var fleet = new Fleet(hubUrl, token, broker))
            {
                var enroll = Stopwatch.StartNew();
                await fleet.EnrollAsync("con-", connected, 32, ct).ConfigureAwait(false);
                var enrollSeconds = enroll.Elapsed.TotalSeconds;
                Step($"connected: connecting (enrolled in {enrollSeconds:0} s)");
                var connect = Stopwatch.StartNew();
                await fleet.ConnectAsync(128, ct).ConfigureAwait(false);
                var connectSeconds = connect.Elapsed.TotalSeconds;
                Step($"connected: holding {hold} s with health every 10 s");
                using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
                var health = fleet.HealthLoopAsync(TimeSpan.FromSeconds(10), stop.Token);
                await Task.Delay(TimeSpan.FromSeconds(hold), ct).ConfigureAwait(false);
                var stillConnected = fleet.Devices.Count(d => d.IsConnected);
                var dropped = fleet.Devices.Sum(d => d.Disconnects);
                var online = await fleet.OnlineAsync("con").ConfigureAwait(false);
                await stop.CancelAsync().ConfigureAwait(false);
                await health.ConfigureAwait(false);
                var held = dropped == 0 ? Math.Min(stillConnected, online) : 0;
                results["connected_devices"] = held;
                results["connected_dropped"] = dropped;
                results["connected_online_at_hub"] = online;
                results["connect_s"] = Math.Round(connectSeconds, 1);
                results["enroll_s"] = Math.Round(enrollSeconds, 1);
                rows.Add(("connected_devices", $"{held:N0}", "≥ 10,000", $"{stillConnected:N0} connected, {online:N0} online at the hub, {dropped} dropped over {hold} s; connected in {connectSeconds:0.0} s"));
            }

            results["hub_rss_mb"] = Math.Round(Rss(hub.Id), 1);
        }
        finally
        {
            if (!hub.HasExited) hub.Kill();
            await hub.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                work.Delete(recursive: true);
            }
            catch (IOException)
            {
            }
        }

        Console.WriteLine();
        Console.WriteLine($"{"key",-22} {"figure",12} {"target",10}  note");
        foreach (var (key, figure, target, note) in rows) Console.WriteLine($"{key,-22} {figure,12} {target,10}  {note}");
        Console.WriteLine($"(baseline measured in this run: {baseline:N0} records/s; this machine: {Environment.ProcessorCount} cores)");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
        await File.WriteAllTextAsync(outPath, results.ToJsonString(new JsonSerializerOptions { WriteIndented = true }), ct).ConfigureAwait(false);
        Console.WriteLine($"wrote {outPath}");
        return 0;
    }

    private static double NaiveLiteDb(string path, int count)
    {
        using var db = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct });
        var col = db.GetCollection("records");
        col.EnsureIndex("key", "$.key", unique: true);
        var docs = Enumerable.Range(0, count).Select(i => new BsonDocument
        {
            ["key"] = $"dev-{i % 1000:D4}|boot|{i}", ["at"] = 1L, ["data"] = "{\"label\":\"normal\",\"score\":0.98,\"latencyMs\":0.16}",
        }).ToList();
        var clock = Stopwatch.StartNew();
        col.InsertBulk(docs, 5000);
        return count / clock.Elapsed.TotalSeconds;
    }

    private static Process Start(string program, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"agent: {e.Data}"); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    private static async Task RunToEndAsync(string program, IEnumerable<string> args, CancellationToken ct)
    {
        using var p = Start(program, args);
        await p.WaitForExitAsync(ct).ConfigureAwait(false);
        if (p.ExitCode != 0) throw new InvalidOperationException($"{program} {string.Join(' ', args)} exited {p.ExitCode}");
    }

    private static double Rss(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
            }
        }

        return 0;
    }


    private static void Step(string what) => Console.WriteLine($"==> {what}");
}
