using System.CommandLine;
using System.Globalization;
using EdgeMl.CommandLine;

namespace EdgeMl.FleetSim;

/// <summary><c>edgeml-fleetsim</c>: many simulated devices from one process, speaking the real protocol to a real hub.</summary>
public static class FleetSimProgram
{
    /// <summary>Runs <c>edgeml-fleetsim ARGS</c>; returns the exit code (<see cref="CliApp"/>).</summary>
    public static async Task<int> MainAsync(string[] args)
    {
        // Not disposed and cancelled asynchronously, for the reason AgentProgram.MainAsync gives.
        var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            _ = cts.CancelAsync();
        };
        return await CliApp.RunAsync(BuildRoot(), args, Console.Out, Console.Error, e => e is IOException or InvalidDataException or HttpRequestException or EdgeMl.Protocol.Packages.ModelPackageException or MQTTnet.Exceptions.MqttCommunicationException, ct: cts.Token).ConfigureAwait(false);
    }

    /// <summary>The whole command tree (also what docs/cli.md is generated from).</summary>
    public static RootCommand BuildRoot()
    {
        static Command Leaf(string name, string description, Func<Dictionary<string, string>, CancellationToken, Task<int>> run, params Option[] options)
        {
            var c = new Command(name, description);
            foreach (var o in options) c.Options.Add(o);
            c.SetAction((parse, ct) => run(new ParsedArgs(parse).GivenOptions().ToDictionary(), ct));
            return c;
        }

        static Option<string> File(string name, string description) => CliOptions.Text(name, description, "PATH", required: true);
        static Option<long> Count(string name, string description, long min = 1) => CliOptions.Integer(name, description, min);
        var root = new RootCommand("edgeml-fleetsim — a simulated fleet speaking the agent's protocol (load generator, demos)")
        {
            Leaf("run", "Enroll N devices (sim-00000 …) through the hub's API, connect them, and keep them reporting", RunAsync,
                CliOptions.HubUrl("--hub", "The hub's API", required: true), CliOptions.Text("--token", "An operator token", "TOKEN", required: true),
                CliOptions.Parsed<string>("--broker", "The hub's MQTT broker", "mqtt://HOST:PORT", true,
                    t => Uri.TryCreate(t, UriKind.Absolute, out var b) && b.Scheme == "mqtt" && b.Host.Length > 0 ? (true, t, "") : (false, t, $"'{t}' is not mqtt://HOST:PORT")), Count("--devices", "How many devices (default 10)"),
                CliOptions.Text("--prefix", "Device id prefix (default sim-)", "PREFIX"), CliOptions.Duration("--health-every", "Health report interval (default 10s)"),
                CliOptions.Duration("--telemetry-every", "Telemetry interval (default: none)"), Count("--batch", "Records per telemetry batch (default 10)"),
                CliOptions.Duration("--duration", "Stop after this long (default: Ctrl-C); batches in flight then still get their PUBACK"),
                CliOptions.Text("--report", "When it stops, write each device's acknowledged records to FILE: {\"ID\":{\"telemetry\":N,\"health\":N}} (seq 1..N of each class)", "FILE")),
            Leaf("bench", "Start a hub and measure ingest, end-to-end latency, connected devices and a backlog drain", HubBench.RunAsync,
                File("--hub-dll", "edgeml-hub.dll"), File("--agent", "The native edgeml-agent"), File("--model", "A model package"),
                CliOptions.Text("--out", "The figures (default bench-results/hub.json)", "FILE"), Count("--devices", "Simulated devices (default 1000)"),
                Count("--seconds", "Ingest measurement (default 20)"), Count("--connected", "Connections held (default 10000)", 0), Count("--hold", "Seconds they are held (default 30)", 0),
                Count("--backlog", "Backlog records drained (default 86400)", 0)),
            Leaf("bench-rollout", "Start a hub and roll a signed package out to simulated devices: time to all active, bytes per device", RolloutBench.RunAsync,
                File("--hub-dll", "edgeml-hub.dll"), File("--model", "A model package (template)"), Count("--devices", "Simulated devices (default 1000)"),
                CliOptions.Size("--size", "Package size (default 5MiB)"), CliOptions.Text("--out", "The figures (default bench-results/rollout.json)", "FILE")),
            Leaf("bench-agent-field", "Start a hub, enroll the native agent and run it as in the field (real-time sensor, outbox, uplink, drift and health every 5 s); merge rss_field_mb and rss_field_slope_mb_per_min into the JSON file", AgentFieldBench.RunAsync,
                File("--hub-dll", "edgeml-hub.dll"), File("--agent", "The native edgeml-agent"), File("--model", "A model package"),
                Count("--seconds", "How long the agent runs, at least 120 (default 150)", 120), CliOptions.Text("--json", "The figures file to merge into (default bench-results/agent.json)", "FILE"),
                CliOptions.Text("--agent-args", "More arguments for the agent, space-separated (write --agent-args=\"--Agent:Key=value …\")", "ARGS"),
                CliOptions.Text("--agent-env", "Environment for the agent", "K=V,K=V")),
            Leaf("demo", "The fleet part of ./build.sh demo: four agent processes, a network cut, nothing lost", FleetDemo.RunAsync,
                File("--hub-dll", "edgeml-hub.dll"), File("--cli-dll", "edgeml.dll"), File("--agent", "The native edgeml-agent"), File("--model", "A model package")),
            CliApp.CompletionCommand("edgeml-fleetsim"),
        };
        root.HelpName = "edgeml-fleetsim";
        return root;
    }

    private static async Task<int> RunAsync(Dictionary<string, string> o, CancellationToken ct)
    {
        var devices = Int(o, "devices", 10);
        var prefix = o.GetValueOrDefault("prefix", "sim-");
        await using var fleet = new Fleet(EdgeMl.Protocol.Text.HubUrls.TryParse(Need(o, "hub"), out var hubUri, out var hubError) ? hubUri : throw new UsageException(hubError), Need(o, "token"), new Uri(Need(o, "broker")));
        Console.WriteLine($"enrolling {devices} devices ({prefix}00000 …)");
        await fleet.EnrollAsync(prefix, devices, 16, ct).ConfigureAwait(false);
        await fleet.ConnectAsync(64, ct).ConfigureAwait(false);
        Console.WriteLine($"{devices} devices connected; Ctrl-C to stop");
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (o.TryGetValue("duration", out var d)) stop.CancelAfter(Duration(d));
        // A broker restart or a dropped connection does not end the run: each device reconnects and sends its unacknowledged
        // batch again until --duration is over.
        foreach (var dev in fleet.Devices) dev.ResendUntil = stop.Token;
        // The loops end on `stop`; a batch already sent waits for its PUBACK (only Ctrl-C, `ct`, cuts it short), so at the
        // end of --duration what the broker acknowledged is exactly what was produced.
        var tasks = new List<Task> { fleet.HealthLoopAsync(o.TryGetValue("health-every", out var he) ? Duration(he) : TimeSpan.FromSeconds(10), stop.Token, ct) };
        if (o.TryGetValue("telemetry-every", out var te))
        {
            var every = Duration(te);
            var batch = Int(o, "batch", 10);
            tasks.Add(Task.WhenAll(fleet.Devices.Select(async dev =>
            {
                using var timer = new PeriodicTimer(every);
                try
                {
                    while (await timer.WaitForNextTickAsync(stop.Token).ConfigureAwait(false)) await dev.SendTelemetryAsync(batch, ct).ConfigureAwait(false);
                }
                catch (Exception e) when ((e is OperationCanceledException && stop.IsCancellationRequested) || ct.IsCancellationRequested)
                {
                    // The duration is over (between batches), or Ctrl-C (MQTTnet reports a cancelled publish as a time-out).
                }
            })));
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
        Console.WriteLine($"stopped: {fleet.Devices.Sum(x => x.AckedTelemetry)} telemetry and {fleet.Devices.Sum(x => x.AckedHealth)} health records acknowledged, "
                          + $"{fleet.Devices.Sum(x => x.Disconnects)} disconnects, {fleet.Devices.Sum(x => x.Resends)} batches sent again");
        if (o.TryGetValue("report", out var report))
        {
            var acked = fleet.Devices.ToDictionary(x => x.Id, x => new Dictionary<string, long> { ["telemetry"] = x.AckedTelemetry, ["health"] = x.AckedHealth });
            await File.WriteAllTextAsync(report, System.Text.Json.JsonSerializer.Serialize(acked), ct).ConfigureAwait(false);
        }

        return 0;
    }

    private static TimeSpan Duration(string text) => EdgeMl.Protocol.Text.Durations.TryParse(text, out var span, out var error) ? span : throw new UsageException(error);

    public static string Need(Dictionary<string, string> o, string key) =>
        o.TryGetValue(key, out var v) ? v : throw new UsageException($"--{key} is needed");

    public static int Int(Dictionary<string, string> o, string key, int fallback) =>
        o.TryGetValue(key, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
}
