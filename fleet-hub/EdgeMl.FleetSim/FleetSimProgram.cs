using System.Globalization;

namespace EdgeMl.FleetSim;

/// <summary><c>edgeml-fleetsim</c>: many simulated devices from one process, speaking the real protocol to a real hub.</summary>
public static class FleetSimProgram
{
    public const string Usage = """
        edgeml-fleetsim — a simulated fleet speaking the agent's protocol (load generator, demos)

        usage:
          edgeml-fleetsim run --hub URL --token OPERATOR_TOKEN --broker mqtt://HOST:PORT --devices N
                              [--prefix sim-] [--health-every SECONDS] [--telemetry-every SECONDS] [--batch N] [--duration SECONDS]
                 enrolls N devices (sim-00000 …) through the hub's API, connects them, and keeps them reporting
          edgeml-fleetsim bench --hub-dll PATH --agent PATH --model PKG [--out bench-results/hub.json]
                              [--devices 1000] [--seconds 20] [--connected 10000] [--hold 30] [--backlog 86400]
                 starts a hub and measures ingest, end-to-end latency, connected devices and a backlog drain
          edgeml-fleetsim bench-rollout --hub-dll PATH --model PKG [--devices 1000] [--size-mb 5] [--out bench-results/rollout.json]
                 starts a hub and rolls a signed package out to simulated devices: time to all active, bytes per device
          edgeml-fleetsim bench-agent-field --hub-dll PATH --agent PATH --model PKG [--seconds 150] [--json bench-results/agent.json]
                              [--agent-args "ARGS"] [--agent-env K=V,K=V]
                 starts a hub, enrolls the native agent and runs it as in the field (real-time sensor, outbox, uplink,
                 drift and health every 5 s); merges rss_field_mb and rss_field_slope_mb_per_min into the JSON file
          edgeml-fleetsim demo --hub-dll PATH --cli-dll PATH --agent PATH --model PKG
                 the fleet part of ./build.sh demo: four agent processes, a network cut, nothing lost
        """;

    public static async Task<int> MainAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "help" or "--help" or "-h")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }

        var options = Options(args.Skip(1));
        using var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            cts.Cancel();
        };
        try
        {
            return args[0] switch
            {
                "run" => await RunAsync(options, cts.Token).ConfigureAwait(false),
                "bench" => await HubBench.RunAsync(options, cts.Token).ConfigureAwait(false),
                "bench-rollout" => await RolloutBench.RunAsync(options, cts.Token).ConfigureAwait(false),
                "bench-agent-field" => await AgentFieldBench.RunAsync(options, cts.Token).ConfigureAwait(false),
                "demo" => await FleetDemo.RunAsync(options, cts.Token).ConfigureAwait(false),
                _ => throw new ArgumentException($"unknown command '{args[0]}'"),
            };
        }
        catch (ArgumentException e)
        {
            await Console.Error.WriteLineAsync($"error: {e.Message}\n\n{Usage}").ConfigureAwait(false);
            return 2;
        }
    }

    private static async Task<int> RunAsync(Dictionary<string, string> o, CancellationToken ct)
    {
        var devices = Int(o, "devices", 10);
        var prefix = o.GetValueOrDefault("prefix", "sim-");
        await using var fleet = new Fleet(new Uri(Need(o, "hub")), Need(o, "token"), new Uri(Need(o, "broker")));
        Console.WriteLine($"enrolling {devices} devices ({prefix}00000 …)");
        await fleet.EnrollAsync(prefix, devices, 16, ct).ConfigureAwait(false);
        await fleet.ConnectAsync(64, ct).ConfigureAwait(false);
        Console.WriteLine($"{devices} devices connected; Ctrl-C to stop");
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (o.TryGetValue("duration", out var d)) stop.CancelAfter(TimeSpan.FromSeconds(double.Parse(d, CultureInfo.InvariantCulture)));
        var tasks = new List<Task> { fleet.HealthLoopAsync(TimeSpan.FromSeconds(Int(o, "health-every", 10)), stop.Token) };
        if (o.TryGetValue("telemetry-every", out var te))
        {
            var every = TimeSpan.FromSeconds(double.Parse(te, CultureInfo.InvariantCulture));
            var batch = Int(o, "batch", 10);
            tasks.Add(Task.WhenAll(fleet.Devices.Select(async dev =>
            {
                using var timer = new PeriodicTimer(every);
                try
                {
                    while (await timer.WaitForNextTickAsync(stop.Token).ConfigureAwait(false)) await dev.SendTelemetryAsync(batch, stop.Token).ConfigureAwait(false);
                }
                catch (Exception) when (stop.IsCancellationRequested)
                {
                }
            })));
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
        Console.WriteLine($"stopped: {fleet.Devices.Sum(x => x.Acked)} telemetry records acknowledged, {fleet.Devices.Sum(x => x.Disconnects)} disconnects");
        return 0;
    }

    public static Dictionary<string, string> Options(IEnumerable<string> args)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var list = args.ToList();
        for (var i = 0; i < list.Count; i++)
        {
            if (!list[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= list.Count) throw new ArgumentException($"'{list[i]}': expected --name value");
            result[list[i][2..]] = list[++i];
        }

        return result;
    }

    public static string Need(Dictionary<string, string> o, string key) =>
        o.TryGetValue(key, out var v) ? v : throw new ArgumentException($"--{key} is needed");

    public static int Int(Dictionary<string, string> o, string key, int fallback) =>
        o.TryGetValue(key, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
}
