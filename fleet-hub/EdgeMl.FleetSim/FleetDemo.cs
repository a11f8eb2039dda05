using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.FleetSim;

/// <summary>
/// The fleet part of <c>./build.sh demo</c>: a hub with its embedded broker, four agent processes that are
/// enrolled with the real <c>edgeml</c> and <c>edgeml-agent enroll</c> commands, stream and report health; the
/// fleet table as an operator sees it; one device's network cut for 20 s and restored (offline, online, backlog
/// drained, nothing lost); then a good model version rolled out in waves, and a bad one stopped at its first wave.
/// </summary>
public static class FleetDemo
{
    private static readonly (string Id, string Group, string Sensor)[] Machines =
    [
        ("press-1", "line-a", "sim:vibration"),
        ("press-2", "line-a", "sim:vibration,drift-offset=25"), // its accelerometer works loose, slowly
        ("press-3", "line-b", "sim:vibration"),
        ("press-4", "line-b", "sim:vibration,fault=bearing,fault-at=35"),
    ];

    public static async Task<int> RunAsync(Dictionary<string, string> o, CancellationToken ct)
    {
        var hubDll = FleetSimProgram.Need(o, "hub-dll");
        var cliDll = FleetSimProgram.Need(o, "cli-dll");
        var agent = FleetSimProgram.Need(o, "agent");
        var model = FleetSimProgram.Need(o, "model");
        var work = Directory.CreateTempSubdirectory("edgeml-fleet-demo-");
        var mqtt = Loopback.FreePort();
        var http = Loopback.FreePort();
        var hubUrl = $"http://127.0.0.1:{http}";
        var agents = new List<Process>();
        var cables = new Dictionary<string, TcpCutProxy>();
        Say($"""

              Fleet demo — a hub (embedded MQTT broker, LiteDB in {work.FullName}/hub) and four machines, each a
              separate edgeml-agent process. They are enrolled with the operator's `edgeml` and `edgeml-agent enroll`,
              stream predictions, report health every 2 s and drift sketches every 4 s. press-2's accelerometer slowly works
              loose (a slow offset): watch its DRIFT go from ok to moderate to major while the others stay ok. After ~15 s
              press-3's network is cut for 20 s.

            """);
        var keys = Path.Combine(work.FullName, "keys");
        await Cli(cliDll, ["keys", "create", "demo", "--dir", keys], echo: true, ct).ConfigureAwait(false);
        var hub = Start("dotnet", [hubDll, "--Data", Path.Combine(work.FullName, "hub"), "--MqttPort", Str(mqtt), "--urls", hubUrl,
            "--TrustedKeys:0", Path.Combine(keys, "demo.pub"), "--RolloutTickMs", "500"], "hub", quiet: true);
        try
        {
            var tokenFile = Path.Combine(work.FullName, "hub", "operator.token");
            for (var i = 0; i < 300 && !File.Exists(tokenFile); i++) await Task.Delay(100, ct).ConfigureAwait(false);
            await Task.Delay(500, ct).ConfigureAwait(false);
            var token = (await File.ReadAllTextAsync(tokenFile, ct).ConfigureAwait(false)).Trim();
            Environment.SetEnvironmentVariable("EDGEML_HUB", hubUrl);
            Environment.SetEnvironmentVariable("EDGEML_TOKEN", token);
            Say($"hub up: HTTP {hubUrl}, MQTT 127.0.0.1:{mqtt}; operator token in hub/operator.token\n");
            // The dashboard: open it now to watch the demo live (sign in with the viewer token; the operator token shows the actions too).
            var viewer = JsonDocument.Parse(await Cli(cliDll, ["tokens", "create", "--role", "viewer", "--name", "demo-viewer", "--json"], echo: true, ct).ConfigureAwait(false))
                .RootElement.GetProperty("token").GetString()!;
            Say($"""
                dashboard: {hubUrl}/
                viewer token (paste it on the sign-in page): {viewer}

                """);

            // The model the machines run goes into the registry first: the hub judges drift against its baseline there.
            var signed = Path.Combine(work.FullName, Path.GetFileName(model));
            File.Copy(model, signed, overwrite: true);
            model = signed;
            await Cli(cliDll, ["model", "sign", model, "--key", Path.Combine(keys, "demo.key")], echo: true, ct).ConfigureAwait(false);
            await Cli(cliDll, ["model", "push", model], echo: true, ct).ConfigureAwait(false);

            foreach (var (id, group, sensor) in Machines)
            {
                var enrollOut = await Cli(cliDll, ["devices", "enroll", id, "--group", group, "--json"], echo: true, ct).ConfigureAwait(false);
                var enrollToken = JsonDocument.Parse(enrollOut).RootElement.GetProperty("token").GetString()!;
                var data = Path.Combine(work.FullName, id);
                Say($"$ edgeml-agent enroll --hub 127.0.0.1:{http} --token {enrollToken[..12]}… --data {id}");
                await RunToEnd(agent, ["enroll", "--hub", $"127.0.0.1:{http}", "--token", enrollToken, "--data", data], ct).ConfigureAwait(false);
                var cable = new TcpCutProxy(mqtt);
                cables[id] = cable;
                agents.Add(Start(agent, ["run", "--model", model, "--sensor", sensor, "--data", data, "--hub", cable.Url, "--health-every", "2",
                    "--quiet", "--results", Path.Combine(data, "results.jsonl"), "--Agent:Hub:ReconnectMinMs=200", "--Agent:Hub:ReconnectMaxMs=2000", "--Agent:Drift:WindowSeconds=4",
                    "--Agent:Actions:0:Label=bearing_fault", "--Agent:Actions:0:After=3", "--Agent:Actions:1:Label=imbalance", "--Agent:Actions:1:After=3"], id, quiet: true));
            }

            Say("");
            var clock = Stopwatch.StartNew();
            long cutAt = 0;
            for (var round = 0; round < 14; round++)
            {
                await Task.Delay(TimeSpan.FromSeconds(round == 0 ? 6 : 4), ct).ConfigureAwait(false);
                if (round == 2)
                {
                    cutAt = await Records(cliDll, "press-3", ct).ConfigureAwait(false);
                    Say($"--- {clock.Elapsed.TotalSeconds:0} s: cutting press-3's network (its agent keeps measuring into its outbox) ---");
                    cables["press-3"].Cut();
                }

                if (round == 7)
                {
                    Say($"--- {clock.Elapsed.TotalSeconds:0} s: press-3's network is back: it reconnects and drains its backlog next to live traffic ---");
                    cables["press-3"].Restore();
                }

                if (round is 0 or 2 or 4 or 6 or 8 or 10 or 13)
                {
                    Say($"$ edgeml devices list        ({clock.Elapsed.TotalSeconds:0} s)");
                    await Cli(cliDll, ["devices", "list"], echo: false, ct).ConfigureAwait(false);
                }
            }

            Say("$ edgeml devices show press-4");
            await Cli(cliDll, ["devices", "show", "press-4"], echo: false, ct).ConfigureAwait(false);
            Say("$ edgeml drift show --device press-2 --since 1h");
            await Cli(cliDll, ["drift", "show", "--device", "press-2", "--since", "1h"], echo: false, ct).ConfigureAwait(false);
            Say("$ edgeml drift show --device press-1 --since 1h");
            await Cli(cliDll, ["drift", "show", "--device", "press-1", "--since", "1h"], echo: false, ct).ConfigureAwait(false);
            await RolloutsAsync(cliDll, model, keys, work.FullName, ct).ConfigureAwait(false);
            foreach (var p in agents) Signal(p, "TERM"); // a clean stop: each says offline itself
            foreach (var p in agents) await p.WaitForExitAsync(ct).ConfigureAwait(false);
            await Task.Delay(500, ct).ConfigureAwait(false);

            // Nothing lost: as many telemetry records at the hub as press-3 logged predictions, none twice
            // (sequence numbers are shared with its health records, so they have gaps by design).
            var printed = File.ReadLines(Path.Combine(work.FullName, "press-3", "results.jsonl")).Count();
            var telemetry = JsonDocument.Parse(await Cli(cliDll, ["devices", "show", "press-3", "--json"], echo: false, ct, print: false).ConfigureAwait(false));
            var stored = await StoredTelemetry(hubUrl, token, "press-3", ct).ConfigureAwait(false);
            var seqs = stored.Select(s => s.Seq).ToList();
            // A record is (boot, seq): each runtime start (also the restart on a new model) numbers a new boot from 1.
            var complete = seqs.Count == printed && stored.Distinct().Count() == stored.Count;
            Say($"""

                press-3: {printed} predictions made (its result log), {seqs.Count} telemetry records stored at the hub, {(complete ? "none missing, none twice" : "MISMATCH")};
                {cutAt} were stored before the cut, the rest crossed the outage in its outbox.
                presence now: {telemetry.RootElement.GetProperty("presence").GetString()} (the agents stopped cleanly)
                """);
            if (!Console.IsInputRedirected)
            {
                // In a terminal: the hub stays up for a look at the dashboard (the agents have stopped; their history stays).
                Say($"""

                    The dashboard stays up at {hubUrl}/ (viewer token {viewer}, operator token {token}).
                    Press Enter to stop the hub.
                    """);
                await Task.Run(Console.ReadLine, ct).ConfigureAwait(false);
            }

            return complete ? 0 : 1;
        }
        finally
        {
            foreach (var p in agents.Where(p => !p.HasExited)) p.Kill();
            foreach (var c in cables.Values) c.Dispose();
            if (!hub.HasExited) Signal(hub, "TERM");
            await hub.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                work.Delete(recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>
    /// v2 (the same network under a new version) goes out in three waves with an agreement gate and a shadow soak;
    /// then v3, whose class labels are reversed — a model that disagrees — fails the gate in its first wave, which
    /// goes back to v2 while the others never receive it. The audit trail shows all of it.
    /// </summary>
    private static async Task RolloutsAsync(string cliDll, string model, string keys, string work, CancellationToken ct)
    {
        var all = string.Join(',', Machines.Select(m => m.Id));
        var versions = new List<string>();
        foreach (var (version, reversed) in new[] { ("2.0.0", false), ("3.0.0", true) })
        {
            var package = ModelPackage.Open(model);
            var manifest = package.Manifest;
            manifest.Version = version;
            if (reversed) manifest.Outputs[0].Labels?.Reverse();
            var path = Path.Combine(work, $"{manifest.Name}-{version}.edgepkg");
            ModelPackage.Write(path, manifest, package.ModelBytes);
            await Cli(cliDll, ["model", "sign", path, "--key", Path.Combine(keys, "demo.key")], echo: true, ct).ConfigureAwait(false);
            await Cli(cliDll, ["model", "push", path], echo: true, ct).ConfigureAwait(false);
            versions.Add($"{manifest.Name}@{version}");
        }

        Say("--- a good version, in waves: each wave runs it in shadow beside 1.0.0 for 4 s, the gate judges the figures, then it is activated ---");
        await FollowRolloutAsync(cliDll, ["rollout", "start", versions[0], "--devices", all, "--waves", "25%,50%,100%", "--gate", "agreement>=0.9", "--gate", "errors<=1%", "--soak", "4s", "--watch", "3s"], ct).ConfigureAwait(false);
        Say("--- a bad version (its labels are reversed: it disagrees with what runs): its first wave fails the gate and goes back ---");
        await FollowRolloutAsync(cliDll, ["rollout", "start", versions[1], "--devices", all, "--waves", "25%,100%", "--gate", "agreement>=0.95", "--soak", "4s"], ct).ConfigureAwait(false);
        await Task.Delay(TimeSpan.FromSeconds(3), ct).ConfigureAwait(false);
        Say("$ edgeml devices list");
        await Cli(cliDll, ["devices", "list"], echo: false, ct).ConfigureAwait(false);
        Say("$ edgeml audit --action rollout");
        await Cli(cliDll, ["audit", "--action", "rollout"], echo: false, ct).ConfigureAwait(false);
    }

    private static async Task FollowRolloutAsync(string cliDll, string[] start, CancellationToken ct)
    {
        var started = JsonDocument.Parse(await Cli(cliDll, [.. start, "--json"], echo: true, ct).ConfigureAwait(false)).RootElement;
        var id = started.GetProperty("id").GetString()!;
        for (var i = 0; i < 120; i++)
        {
            await Task.Delay(TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
            var r = JsonDocument.Parse(await Cli(cliDll, ["rollout", "status", id, "--json"], echo: false, ct, print: false).ConfigureAwait(false)).RootElement;
            if (r.GetProperty("state").GetString() != "running" || i % 8 == 7)
            {
                Say($"$ edgeml rollout status {id}");
                await Cli(cliDll, ["rollout", "status", id], echo: false, ct).ConfigureAwait(false);
            }

            if (r.GetProperty("state").GetString() != "running") return;
        }
    }

    private static async Task<long> Records(string cliDll, string id, CancellationToken ct) =>
        JsonDocument.Parse(await Cli(cliDll, ["devices", "show", id, "--json"], echo: false, ct, print: false).ConfigureAwait(false)).RootElement.GetProperty("records").GetInt64();

    private static async Task<List<(string Boot, long Seq)>> StoredTelemetry(string hub, string token, string id, CancellationToken ct)
    {
        using var http = new HttpClient { BaseAddress = new Uri(hub) };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        var json = await http.GetStringAsync($"/api/devices/{id}/telemetry?limit=10000", ct).ConfigureAwait(false);
        return JsonDocument.Parse(json).RootElement.EnumerateArray().Select(r => (r.GetProperty("boot").GetString()!, r.GetProperty("seq").GetInt64())).ToList();
    }

    private static async Task<string> Cli(string cliDll, string[] args, bool echo, CancellationToken ct, bool print = true)
    {
        if (echo) Say($"$ edgeml {string.Join(' ', args.Where(a => a != "--json"))}");
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(cliDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = await p.StandardOutput.ReadToEndAsync(ct).ConfigureAwait(false);
        var error = await p.StandardError.ReadToEndAsync(ct).ConfigureAwait(false);
        await p.WaitForExitAsync(ct).ConfigureAwait(false);
        if (p.ExitCode != 0) throw new InvalidOperationException($"edgeml {string.Join(' ', args)}: {error}");
        if (print && !args.Contains("--json")) Console.Write(Indent(output));
        return output;
    }

    private static string Indent(string text) => string.Join('\n', text.TrimEnd().Split('\n').Select(l => "    " + l)) + "\n\n";

    private static Process Start(string program, IEnumerable<string> args, string name, bool quiet)
    {
        var psi = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, e) => { if (!quiet && e.Data is not null) Console.WriteLine($"{name}: {e.Data}"); };
        p.ErrorDataReceived += (_, e) => { if (!quiet && e.Data is not null) Console.WriteLine($"{name}: {e.Data}"); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    private static async Task RunToEnd(string program, IEnumerable<string> args, CancellationToken ct)
    {
        using var p = Start(program, args, "agent", quiet: true);
        await p.WaitForExitAsync(ct).ConfigureAwait(false);
        if (p.ExitCode != 0) throw new InvalidOperationException($"{program} {string.Join(' ', args)} exited {p.ExitCode}");
    }

    private static void Signal(Process p, string signal)
    {
        using var kill = Process.Start("/bin/kill", [$"-{signal}", p.Id.ToString(CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }

    private static void Say(string text) => Console.WriteLine(text);

    private static string Str(int v) => v.ToString(CultureInfo.InvariantCulture);

}
