using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeMl.FleetHub.Store;
using Microsoft.Playwright;

namespace EdgeMl.Benchmarks;

/// <summary>
/// The dashboard issue's figures, in Debian's headless Chromium against a real hub (edgeml-hub.dll beside this program):
/// <c>fleet_page_10k_ms</c>, the fleet page's first render (navigation to a drawn table) with 10,000 registered devices,
/// and <c>device_page_ms</c>, a device page with a day of health history at 5 s (17,280 reports) over its 24 h range, to
/// every chart drawn. The store is filled before the hub starts (the hub's own store code, as ingest writes it).
/// Each figure is the median of 5 loads after one warm-up; the first load is reported beside it. A load is timed from the
/// navigation to the frame on which the ready element exists (checked on every animation frame), and the API requests
/// of each page's last load (Chromium's resource timing) and the page's own marks (<c>edgeml:*</c>) are printed.
/// </summary>
public static class DashboardBench
{
    private const int Devices = 10_000;
    private const int DayReports = 86_400 / 5;

    public static int Run(string outPath)
    {
        if (!File.Exists("/usr/bin/chromium")) throw new InvalidOperationException("/usr/bin/chromium is needed (apt-get install chromium)");
        var data = Path.Combine(Path.GetTempPath(), $"edgeml-dashboard-bench-{Environment.ProcessId}");
        Directory.CreateDirectory(data);
        Process? hub = null;
        try
        {
            var fill = Stopwatch.StartNew();
            Fill(data);
            Console.WriteLine($"store filled in {fill.Elapsed.TotalSeconds:0.0} s: {Devices:N0} devices, {DayReports:N0} health reports for bench-0");
            var port = FreePort();
            var token = "op_" + Guid.NewGuid().ToString("N");
            hub = Process.Start(new ProcessStartInfo("dotnet")
            {
                ArgumentList = { Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll"), "--Data", data, "--MqttPort", FreePort().ToString(CultureInfo.InvariantCulture),
                    "--urls", $"http://127.0.0.1:{port}", "--OperatorToken", token, "--Logging:LogLevel:Default=Warning" },
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            })!;
            hub.OutputDataReceived += (_, _) => { };
            hub.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"hub: {e.Data}"); };
            hub.BeginOutputReadLine();
            hub.BeginErrorReadLine();
            var url = $"http://127.0.0.1:{port}";
            WaitForHub(url, token);
            var (fleet, fleetFirst, device, deviceFirst, points) = Measure(url, token).GetAwaiter().GetResult();

            var json = new JsonObject
            {
                ["fleet_page_10k_ms"] = Math.Round(fleet, 0), ["fleet_page_10k_first_ms"] = Math.Round(fleetFirst, 0),
                ["device_page_ms"] = Math.Round(device, 0), ["device_page_first_ms"] = Math.Round(deviceFirst, 0),
                ["device_page_points"] = points, ["devices"] = Devices, ["health_reports"] = DayReports,
            };
            Console.WriteLine();
            Console.WriteLine($"{"key",-20} {"figure",8} {"target",8}  note");
            Console.WriteLine($"{"fleet_page_10k_ms",-20} {fleet,8:0} {"≤ 1000",8}  median of 5 (first {fleetFirst:0} ms): navigation to the drawn device table, {Devices:N0} devices");
            Console.WriteLine($"{"device_page_ms",-20} {device,8:0} {"≤ 1000",8}  median of 5 (first {deviceFirst:0} ms): 24 h range, every chart drawn, {points:N0} points per chart of {DayReports:N0} stored");
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
            File.WriteAllText(outPath, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            Console.WriteLine($"wrote {outPath}");
            return 0;
        }
        finally
        {
            if (hub is { HasExited: false })
            {
                hub.Kill(entireProcessTree: true);
                hub.WaitForExit();
            }

            hub?.Dispose();
            Directory.Delete(data, recursive: true);
        }
    }

    /// <summary>10,000 registered devices in 20 groups, two thirds of them seen with a health report; bench-0 with a day of reports every 5 s.</summary>
    private static void Fill(string data)
    {
        using var store = new LiteDbHubStore(data);
        var now = DateTimeOffset.UtcNow;
        for (var i = 0; i < Devices; i++)
        {
            store.CreateEnrollment($"bench-{i}", $"line-{i % 20}", new Dictionary<string, string> { ["site"] = $"s{i % 7}" }, $"hash-{i}", now.AddDays(1), now);
        }

        var batch = new List<(string, IReadOnlyList<IncomingRecord>)>();
        for (var i = 1; i < Devices; i++)
        {
            if (i % 3 == 0) continue; // never seen
            batch.Add(($"bench-{i}", [new IncomingRecord("b1", 1, "health", now.ToUnixTimeMilliseconds(), Health(i, now, i % 2 == 0 ? "1.0.0" : "1.1.0"))]));
            if (batch.Count == 500)
            {
                store.StoreBatches(batch, now);
                batch.Clear();
            }
        }

        if (batch.Count > 0) store.StoreBatches(batch, now);
        for (var i = 1; i < Devices; i++) if (i % 3 != 0) store.SetPresence($"bench-{i}", i % 5 == 0 ? "offline" : "online", "b1", now);

        // bench-0: a day at 5 s, sent as the agent does, in batches.
        var start = now.AddDays(-1);
        for (var s = 0; s < DayReports; s += 120)
        {
            var records = new List<IncomingRecord>();
            for (var k = s; k < Math.Min(DayReports, s + 120); k++)
            {
                var at = start.AddSeconds(5 * k);
                records.Add(new IncomingRecord("b1", k + 1, "health", at.ToUnixTimeMilliseconds(), Health(k, at, "1.0.0")));
            }

            store.StoreBatches([("bench-0", records)], start.AddSeconds(5 * (s + 120)));
        }

        store.SetPresence("bench-0", "online", "b1", now);
    }

    private static string Health(int k, DateTimeOffset at, string version)
    {
        var wave = Math.Sin(k / 500.0);
        return JsonSerializer.Serialize(new
        {
            at,
            uptimeSeconds = 5.0 * k,
            model = new { name = "vibration-fault", version, provider = "cpu", predictions = 8L * k, windowsDropped = k / 1000, inferencesPerSecond = 7.8 + wave / 4, latencyP50Ms = 0.7 + wave / 10, latencyP99Ms = 1.1 + wave / 5 },
            sensors = new[] { new { name = "sim:vibration", state = "ok", samples = 1000L * k, errors = 0 } },
            outbox = new { depth = new Dictionary<string, long> { ["telemetry"] = k % 7 }, bytes = 1000, maxBytes = 1 << 26 },
            system = new { cpus = 4, cpuPercent = 20 + 10 * wave, memoryUsedPercent = 40 + 5 * wave, processRssMb = 38 + wave, diskFreeMb = 8000 - k / 100.0, temperatureC = 52 + 6 * wave },
        });
    }

    private static async Task<(double Fleet, double FleetFirst, double Device, double DeviceFirst, int Points)> Measure(string url, string token)
    {
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = "/usr/bin/chromium", Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
        });
        var context = await browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = url, ViewportSize = new ViewportSize { Width = 1280, Height = 860 } });
        context.SetDefaultTimeout(60_000);
        var signIn = await context.APIRequest.PostAsync("/api/session", new APIRequestContextOptions { DataObject = new { token } });
        if (!signIn.Ok) throw new InvalidOperationException($"sign-in failed: {signIn.Status} {await signIn.TextAsync()}");
        // The device page opens on the 24 h range (the page keeps the choice per tab).
        await context.AddInitScriptAsync("sessionStorage.setItem('edgeml.range', '24h')");

        var breakdown = new Dictionary<string, string>();
        async Task<double> Load(string hash, string ready)
        {
            var page = await context.NewPageAsync();
            var clock = Stopwatch.StartNew();
            await page.GotoAsync($"/{hash}");
            // Checked on every animation frame: WaitForSelectorAsync polls with a back-off (20, 50, 100, 100, then every 500 ms), which
            // added up to half a second after the page had drawn, whatever the page did.
            await page.WaitForFunctionAsync("selector => document.querySelector(selector) !== null", ready);
            var ms = clock.Elapsed.TotalMilliseconds;
            // Where the time went: every API request of the load (start after navigation, duration, bytes received), from
            // Chromium's resource timing; printed for the last load of each page.
            var entries = await page.EvaluateAsync<JsonElement>(
                "() => performance.getEntriesByType('resource').filter(e => e.name.includes('/api/') && !e.name.includes('/api/events'))" +
                ".map(e => [new URL(e.name).pathname + new URL(e.name).search, e.startTime, e.duration, e.encodedBodySize])");
            var nav = await page.EvaluateAsync<JsonElement>(
                "() => { const n = performance.getEntriesByType('navigation')[0]; return [n.responseEnd, n.domContentLoadedEventEnd, performance.now(), " +
                "performance.getEntriesByType('mark').filter(m => m.name.startsWith('edgeml:')).map(m => `${m.name.slice(7)} ${Math.round(m.startTime)}`).join(', ')]; }");
            breakdown[hash] = $"  document at {nav[0].GetDouble():0} ms, DOMContentLoaded {nav[1].GetDouble():0} ms, checked at {nav[2].GetDouble():0} ms (page clock); load {ms:0} ms\n  marks: {nav[3].GetString()}\n"
                + string.Join("\n", entries.EnumerateArray().Select(e =>
                $"  {e[1].GetDouble(),6:0} ms +{e[2].GetDouble(),5:0} ms {e[3].GetDouble() / 1024,7:0} KiB  {Shorten(e[0].GetString() ?? "")}"));
            await page.CloseAsync();
            return ms;
        }

        var fleetReady = "main[data-rendered='fleet'] table.devices tbody tr";
        var deviceReady = "main[data-rendered='device'] [data-testid='chart-outbox'][data-drawn='true']";
        var fleetFirst = await Load("#/fleet", fleetReady);
        var fleet = new List<double>();
        for (var i = 0; i < 5; i++) fleet.Add(await Load("#/fleet", fleetReady));
        var deviceFirst = await Load("#/device/bench-0", deviceReady);
        var device = new List<double>();
        for (var i = 0; i < 5; i++) device.Add(await Load("#/device/bench-0", deviceReady));

        var probe = await context.NewPageAsync();
        await probe.GotoAsync("/#/device/bench-0");
        await probe.WaitForSelectorAsync(deviceReady, new PageWaitForSelectorOptions { State = WaitForSelectorState.Attached });
        var points = int.Parse(await probe.GetByTestId("chart-cpu").GetAttributeAsync("data-points") ?? "0", CultureInfo.InvariantCulture);
        Console.WriteLine($"fleet loads: {string.Join(", ", fleet.Select(x => x.ToString("0", CultureInfo.InvariantCulture)))} ms; device loads: {string.Join(", ", device.Select(x => x.ToString("0", CultureInfo.InvariantCulture)))} ms");
        foreach (var (hash, lines) in breakdown) Console.WriteLine($"{hash}: API requests of the last load (start, duration, body)\n{lines}");
        return (Median(fleet), fleetFirst, Median(device), deviceFirst, points);
    }

    private static string Shorten(string path) => path.Length > 110 ? path[..107] + "..." : path;

    private static double Median(List<double> xs)
    {
        var s = xs.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }

    private static void WaitForHub(string url, string token)
    {
        using var http = new HttpClient { BaseAddress = new Uri(url) };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        var deadline = Environment.TickCount64 + 60_000;
        while (true)
        {
            try
            {
                if (http.GetAsync("/api/session").Result is { } r && (int)r.StatusCode is 401 or 200) return;
            }
            catch (AggregateException)
            {
                // not listening yet
            }

            if (Environment.TickCount64 > deadline) throw new TimeoutException("the hub did not answer within 60 s");
            Thread.Sleep(100);
        }
    }

    private static int FreePort()
    {
        using var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        return ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
    }
}
