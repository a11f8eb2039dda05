using System.CommandLine;
using EdgeMl.CommandLine;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.Agent.Cli;

/// <summary>
/// <c>edgeml-agent COMMAND …</c> on System.CommandLine (generated help, <c>--version</c>, <c>completion bash</c>). User
/// errors and a stopped agent become one line on stderr and exit 1; a wrong command line exits 2; never a stack trace.
/// </summary>
public static class AgentProgram
{
    /// <summary>Runs <c>edgeml-agent ARGS</c>; Ctrl-C and SIGTERM stop it cleanly. Returns the exit code (<see cref="CliApp"/>).</summary>
    public static async Task<int> MainAsync(string[] args)
    {
        // Not disposed: a signal can arrive while the program is already ending. And cancelled asynchronously: Cancel()
        // would run the whole shutdown on the signal's thread, inside the handler, and the program could end — and
        // dispose what the handler still uses — before Cancel() returned (an unhandled ObjectDisposedException, exit 134,
        // seen on SIGTERM with a sensor read blocked).
        var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            Stop(cts, "Ctrl-C");
        };

        // SIGTERM (systemd, kill, a supervisor) stops as cleanly as Ctrl-C: the pipeline ends, the last records are
        // delivered (a short grace), the agent says offline itself. Without this the runtime would just exit.
        using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            Stop(cts, "SIGTERM");
        });

        return await CliApp.RunAsync(BuildRoot(), args, Console.Out, Console.Error, IsUserError, handlesSignals: true, cts.Token).ConfigureAwait(false);
    }

    /// <summary>How long a stop may take (pipeline, last deliveries, offline status) before the agent exits anyway.</summary>
    public static readonly TimeSpan StopDeadline = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Starts the stop, and bounds it: an agent that has not ended <see cref="StopDeadline"/> after the signal exits with
    /// code 1 and a line saying so (never hangs on a stop; the supervisor sees a failed stop).
    /// </summary>
    private static void Stop(CancellationTokenSource cts, string signal)
    {
        if (cts.IsCancellationRequested) return;
        _ = cts.CancelAsync();
        _ = Task.Run(async () =>
        {
            await Task.Delay(StopDeadline).ConfigureAwait(false);
            await Console.Error.WriteLineAsync($"error: the agent did not stop within {StopDeadline.TotalSeconds:0} s of {signal}; exiting").ConfigureAwait(false);
            Environment.Exit(CliApp.Failed);
        });
    }

    /// <summary>The sensor specs <c>--sensor</c> takes (README: sensors).</summary>
    private const string Sensors =
        "sim:vibration[,fault=none|imbalance|bearing,fault-at=SECONDS,severity=X,drift-gain=X,drift-offset=X]  sim:environment  "
        + "replay:FILE.csv[,rate=HZ,loop=true]  replay:FILE.wav[,channels=A+B,loop=true] (16-bit PCM)  bme280[,bus=1,address=0x76]  "
        + "bmp280[,bus=1,address=0x76]  mpu6050[,bus=1,address=0x68,rate=HZ]  gpio:PIN+PIN[,rate=HZ]";

    /// <summary>What the user or the machine caused: printed as is, exit 1.</summary>
    public static bool IsUserError(Exception e) =>
        e is ConfigurationException or ModelPackageException or InvalidDataException or Hosting.AgentStoppedException or IOException or UnauthorizedAccessException;

    /// <summary>The whole command tree (also what docs/cli.md is generated from).</summary>
    public static RootCommand BuildRoot()
    {
        static Command Leaf(string name, string description, Func<ParsedArgs, CancellationToken, Task<int>> run, params Symbol[] symbols)
        {
            var c = new Command(name, description);
            foreach (var s in symbols)
            {
                if (s is Option o) c.Options.Add(o);
                else if (s is Argument a) c.Arguments.Add(a);
            }

            c.SetAction((parse, ct) => run(new ParsedArgs(parse), ct));
            return c;
        }

        static Argument<string> Package() => new("PKG") { Description = "The model package (.edgepkg)" };
        var provider = CliOptions.Choice("--provider", "Execution provider (default cpu)", "cpu", "cuda", "tensorrt");
        var onnxruntime = CliOptions.Text("--onnxruntime", "The ONNX Runtime library to load (default: beside the binary)", "LIB");

        var run = Leaf("run", "Run the agent: as the service (--config FILE, any configuration key as --Agent:Key=value) or quick mode (--model --sensor: one JSON line per prediction on stdout)",
            (a, ct) => RunCommand.RunAsync(a, ct),
            CliOptions.Text("--config", "The agent's configuration file (see README: configuration)", "FILE"), CliOptions.Text("--model", "Quick mode: the model package", "PKG"),
            CliOptions.Text("--sensor", "Quick mode: the sensor. " + Sensors, "SPEC"),
            CliOptions.Integer("--seed", "Seed of simulated sensors", 0, int.MaxValue), CliOptions.Integer("--count", "Stop after N predictions (0: until stopped)", 0),
            CliOptions.Flag("--fast", "Read the sensor as fast as possible instead of in real time"), CliOptions.Integer("--threads", "Inference threads", 1, 256),
            provider, onnxruntime, CliOptions.Text("--results", "Also write each prediction to this file", "FILE"),
            CliOptions.Choice("--format", "Prediction lines (default json)", "json", "text"),
            CliOptions.Duration("--health-every", "Health report interval (0: off)", allowZero: true), CliOptions.Text("--data", "The data directory (outbox, identity, model slots)", "DIR"),
            CliOptions.Text("--hub", "The broker to sync with", "mqtt://HOST:PORT"), CliOptions.Text("--device", "This device's id on the hub", "ID"),
            CliOptions.Flag("--quiet", "Only warnings and errors on stderr"),
            CliOptions.Choice("--log-format", "Log lines on stderr: text, or json (one JSON object a line, for journald and log shippers; default text)", AgentLogging.Formats));
        run.TreatUnmatchedTokensAsErrors = false; // --Agent:Key=value overrides; ParsedArgs.ConfigOverrides refuses anything else

        var root = new RootCommand("edgeml-agent — runs quantized ONNX models on sensor data at the edge")
        {
            run,
            Leaf("enroll", "Join a hub with the operator's one-time token (from `edgeml devices enroll ID`)", (a, ct) => EnrollCommand.RunAsync(a, ct),
                CliOptions.HubUrl("--hub", "The hub's API: HOST[:PORT] (port 8080) or http(s)://HOST[:PORT]", required: true),
                CliOptions.Text("--token", "The one-time enrollment token", "TOKEN", required: true),
                CliOptions.Text("--data", "The agent's data directory (Agent:DataDirectory)", "DIR", required: true),
                CliOptions.Text("--broker", "The broker, when the hub's own address is not the one to use", "mqtt(s)://HOST:PORT"),
                CliOptions.Text("--ca", "A CA certificate (PEM) to trust for the hub and broker", "FILE")),
            Leaf("status", "The device's status from local state, no network (works while the agent runs)", (a, _) => Task.FromResult(StatusCommand.Run(a)),
                CliOptions.Text("--data", "The agent's data directory", "DIR", required: true), CliOptions.Flag("--json", "JSON instead of text")),
            Leaf("check-model", "Validate a package (and its signature) and run a smoke inference", (a, _) => Task.FromResult(CheckModelCommand.Run(a)),
                Package(), CliOptions.Text("--trust", "Trusted public keys, comma-separated (the package must be signed by one)", "KEY.pub,…"), provider, onnxruntime),
            Leaf("bench", "Size, memory, cold start, overhead, allocations", (a, _) => Task.FromResult(BenchCommand.Run(a)),
                Package(), CliOptions.Text("--json", "Also write the figures to this file", "FILE"),
                CliOptions.Integer("--rounds", "Measurement rounds (default 15)", 1, 10_000), CliOptions.Integer("--starts", "Cold starts measured (default 7)", 1, 1_000)),
            Leaf("record", "Record a sensor to CSV (the replay format)", (a, _) => Task.FromResult(RecordCommand.Run(a)),
                CliOptions.Text("--sensor", "The sensor. " + Sensors, "SPEC", required: true), CliOptions.Integer("--samples", "How many samples", 1, required: true),
                CliOptions.Text("--out", "The CSV file to write", "FILE.csv", required: true), CliOptions.Integer("--seed", "Seed of simulated sensors", 0, int.MaxValue)),
            Leaf("install", "Run the agent as a systemd service without the .deb: the package's unit (ExecStart= this binary) and /etc/edgeml/agent.json, the user edgeml; idempotent",
                (a, _) => Task.FromResult(InstallCommand.Run(a, Console.Out)),
                CliOptions.Flag("--uninstall", "Stop and remove the service (the configuration only if unchanged; /var/lib/edgeml is kept)"),
                CliOptions.Flag("--no-start", "Enable the service but do not start it now"),
                CliOptions.Flag("--force", "Replace a unit file that install did not write or that was edited since"),
                CliOptions.Text("--root", "Write under this directory and run nothing (tests, image builders)", "DIR")),
            CliApp.CompletionCommand("edgeml-agent"),
        };
        root.HelpName = "edgeml-agent";
        return root;
    }
}
