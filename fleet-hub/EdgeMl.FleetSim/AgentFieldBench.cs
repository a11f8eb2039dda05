using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EdgeMl.FleetSim;

/// <summary>
/// <c>./build.sh bench agent</c>, field part: the native agent as it runs on a device — the bundled model, the
/// simulated accelerometer in real time (1 kHz), an outbox, an uplink to a real hub on loopback it is enrolled with,
/// drift windows and health every 5 s — for <c>--seconds</c> (at least 120). Its resident set (<c>VmRSS</c> of
/// <c>/proc/PID/status</c>) is sampled every 2 s; the figures are the median of the last minute
/// (<c>rss_field_mb</c>) and the least-squares slope over the last minute (<c>rss_field_slope_mb_per_min</c>). They
/// are merged into <c>--json</c> (the agent's own bench writes the other keys there). The run fails when the hub
/// received nothing: a figure measured without a working uplink would not be the field's.
/// </summary>
public static class AgentFieldBench
{
    public static async Task<int> RunAsync(Dictionary<string, string> o, CancellationToken ct)
    {
        var hubDll = FleetSimProgram.Need(o, "hub-dll");
        var agent = FleetSimProgram.Need(o, "agent");
        var model = FleetSimProgram.Need(o, "model");
        var jsonPath = o.GetValueOrDefault("json", "bench-results/agent.json");
        var seconds = FleetSimProgram.Int(o, "seconds", 150);
        if (seconds < 120) throw new EdgeMl.CommandLine.UsageException("--seconds must be at least 120 (the figures are over the last minute, after the plateau)");
        // Variants for measuring what a setting costs: --agent-args "--threads 2", --agent-env "DOTNET_GCgen0size=400000".
        var extraArgs = o.TryGetValue("agent-args", out var ea) ? ea.Split(' ', StringSplitOptions.RemoveEmptyEntries) : [];
        var extraEnv = o.TryGetValue("agent-env", out var ee) ? ee.Split(',', StringSplitOptions.RemoveEmptyEntries) : [];

        var work = Directory.CreateTempSubdirectory("edgeml-agent-field-");
        var mqtt = Loopback.FreePort();
        var http = Loopback.FreePort();
        var hubUrl = new Uri($"http://127.0.0.1:{http}");
        var hubData = Path.Combine(work.FullName, "hub");
        var agentData = Path.Combine(work.FullName, "agent");
        using var hub = HubProcess.Start(hubDll, hubData, mqtt, hubUrl);
        Process? running = null;
        try
        {
            var token = await HubProcess.WaitAsync(hubData, hubUrl, ct).ConfigureAwait(false);
            using var client = new HttpClient { BaseAddress = hubUrl };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using (var reg = await client.PostAsJsonAsync("/api/devices", new { id = "field-1" }, ct).ConfigureAwait(false))
            {
                reg.EnsureSuccessStatusCode();
                var enrollToken = (await reg.Content.ReadFromJsonAsync<JsonElement>(ct).ConfigureAwait(false)).GetProperty("token").GetString()!;
                await RunToEndAsync(agent, ["enroll", "--hub", $"127.0.0.1:{http}", "--token", enrollToken, "--data", agentData], ct).ConfigureAwait(false);
            }

            Console.WriteLine($"==> field: the agent runs {seconds} s (real-time sim:vibration, outbox, uplink to a hub on loopback, drift and health every 5 s)");
            var psi = new ProcessStartInfo(agent) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[]
                     {
                         "run", "--model", model, "--sensor", "sim:vibration", "--data", agentData, "--results", Path.Combine(work.FullName, "predictions.jsonl"),
                         "--health-every", "5", "--Agent:Drift:WindowSeconds=5", "--quiet",
                     }.Concat(extraArgs))
            {
                psi.ArgumentList.Add(a);
            }

            foreach (var kv in extraEnv)
            {
                var eq = kv.IndexOf('=', StringComparison.Ordinal);
                psi.Environment[kv[..eq]] = kv[(eq + 1)..];
            }

            running = Process.Start(psi)!;
            running.OutputDataReceived += (_, _) => { };
            running.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"agent: {e.Data}"); };
            running.BeginOutputReadLine();
            running.BeginErrorReadLine();

            var samples = new List<(double Seconds, double Mb)>();
            var cpu = new List<(double Seconds, double CpuSeconds)>();
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed.TotalSeconds < seconds)
            {
                await Task.Delay(TimeSpan.FromSeconds(2), ct).ConfigureAwait(false);
                if (running.HasExited) throw new InvalidOperationException($"the agent exited ({running.ExitCode}) after {clock.Elapsed.TotalSeconds:0} s");
                samples.Add((clock.Elapsed.TotalSeconds, ResidentMb(running.Id)));
                cpu.Add((clock.Elapsed.TotalSeconds, CpuSeconds(running.Id)));
                if (samples.Count % 15 == 0) Console.WriteLine($"    {clock.Elapsed.TotalSeconds,5:0} s  {samples[^1].Mb,6:0.0} MB");
            }

            var delivered = await RecordsAsync(client, "field-1", ct).ConfigureAwait(false);
            if (delivered == 0) throw new InvalidOperationException("the hub received no record from the agent: the uplink did not work, so this is not the field's figure");

            var last = samples.Where(s => s.Seconds >= clock.Elapsed.TotalSeconds - 60).ToList();
            var median = Median(last.Select(s => s.Mb).ToArray());
            var slope = Slope(last);
            var peak = samples.Max(s => s.Mb);
            var lastCpu = cpu.Where(c => c.Seconds >= clock.Elapsed.TotalSeconds - 60).ToList();
            var cpuPercent = (lastCpu[^1].CpuSeconds - lastCpu[0].CpuSeconds) / (lastCpu[^1].Seconds - lastCpu[0].Seconds) * 100;
            Console.WriteLine();
            Console.WriteLine($"{"key",-28} {"value",12} {"unit",-6} {"target",-9} figure");
            Console.WriteLine($"{"rss_field_mb",-28} {median,12:0.0} {"MB",-6} {"<= 40",-9} resident set on the field path, median of the last minute ({last.Count} samples)");
            Console.WriteLine($"{"rss_field_slope_mb_per_min",-28} {slope,12:0.000} {"MB/min",-6} {"<= 0.1",-9} least-squares slope over the last minute");
            Console.WriteLine($"{"rss_field_peak_mb",-28} {peak,12:0.0} {"MB",-6} {"",-9} highest sample of the run");
            Console.WriteLine($"{"cpu_field_percent",-28} {cpuPercent,12:0.0} {"%",-6} {"",-9} CPU time of the agent over the last minute, % of one core");
            Console.WriteLine($"{"field_records_delivered",-28} {delivered,12} {"",-6} {"> 0",-9} records the hub stored from the agent in {seconds} s");

            var root = File.Exists(jsonPath) ? JsonNode.Parse(await File.ReadAllTextAsync(jsonPath, ct).ConfigureAwait(false)) as JsonObject ?? [] : [];
            root["rss_field_mb"] = Math.Round(median, 2);
            root["rss_field_slope_mb_per_min"] = Math.Round(slope, 4);
            root["rss_field_peak_mb"] = Math.Round(peak, 2);
            root["cpu_field_percent"] = Math.Round(cpuPercent, 2);
            root["field_records_delivered"] = delivered;
            root["field_seconds"] = seconds;
            var dir = Path.GetDirectoryName(Path.GetFullPath(jsonPath));
            if (dir is not null) Directory.CreateDirectory(dir);
            await File.WriteAllTextAsync(jsonPath, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n", ct).ConfigureAwait(false);
            Console.WriteLine($"figures merged into {jsonPath}");
            return 0;
        }
        finally
        {
            foreach (var p in new[] { running, hub })
            {
                if (p is null) continue;
                if (!p.HasExited) p.Kill(entireProcessTree: true);
                await p.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            }

            running?.Dispose();
            try
            {
                work.Delete(recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>Least-squares slope of <paramref name="points"/> in MB per minute (0 for fewer than two points).</summary>
    public static double Slope(IReadOnlyList<(double Seconds, double Mb)> points)
    {
        if (points.Count < 2) return 0;
        var mx = points.Average(p => p.Seconds);
        var my = points.Average(p => p.Mb);
        var sxy = points.Sum(p => (p.Seconds - mx) * (p.Mb - my));
        var sxx = points.Sum(p => (p.Seconds - mx) * (p.Seconds - mx));
        return sxx == 0 ? 0 : sxy / sxx * 60;
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static async Task<long> RecordsAsync(HttpClient client, string device, CancellationToken ct)
    {
        var doc = await client.GetFromJsonAsync<JsonElement>($"/api/devices/{device}", ct).ConfigureAwait(false);
        return doc.TryGetProperty("records", out var r) && r.ValueKind == JsonValueKind.Number ? r.GetInt64() : 0;
    }

    private static double ResidentMb(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
            }
        }

        return double.NaN;
    }

    /// <summary>User and system CPU time of a process so far (fields 14 and 15 of /proc/PID/stat, clock ticks of 1/100 s).</summary>
    private static double CpuSeconds(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // fields[0] is the state (field 3): utime and stime are fields 14 and 15.
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
    }

    private static async Task RunToEndAsync(string program, IReadOnlyList<string> args, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct).ConfigureAwait(false);
        if (p.ExitCode != 0) throw new InvalidOperationException($"{program} {args[0]} exited {p.ExitCode}: {(await stderr.ConfigureAwait(false)).Trim()} {(await stdout.ConfigureAwait(false)).Trim()}");
    }
}
