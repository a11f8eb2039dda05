using EdgeMl.Protocol.Packages;

namespace EdgeMl.Agent.Cli;

/// <summary>
/// Dispatches <c>edgeml-agent COMMAND …</c>; user errors and a stopped agent become one line on stderr and exit 1 (2 for
/// usage, 70 for anything unexpected: still one line, never a stack trace).
/// </summary>
public static class AgentProgram
{
    private static readonly IReadOnlySet<string> Flags = new HashSet<string> { "fast", "quiet", "help" };
    private static readonly IReadOnlySet<string> StatusFlags = new HashSet<string> { "json" };

    public const string Usage = """
        edgeml-agent — runs quantized ONNX models on sensor data at the edge

        usage:
          edgeml-agent run --config FILE [--Agent:Key=value …]     the service (see README: configuration)
          edgeml-agent run --model PKG --sensor SPEC [--seed N] [--count N] [--fast] [--threads N]
                           [--provider cpu|cuda|tensorrt] [--onnxruntime LIB] [--results FILE]
                           [--format json|text] [--health-every SECONDS] [--data DIR]
                           [--hub mqtt://HOST:PORT --device ID] [--quiet]
                                                                    one JSON line per prediction on stdout
          edgeml-agent enroll --hub HOST[:PORT] --token TOKEN --data DIR [--broker mqtt(s)://HOST:PORT] [--ca FILE]
                                                                    join a hub with the operator's one-time token
          edgeml-agent status --data DIR [--json]                   the device's status from local state (no network)
          edgeml-agent check-model PKG [--trust KEY.pub,…]          validate a package (and its signature) and run a smoke inference
          edgeml-agent bench PKG [--json FILE]                      size, memory, cold start, overhead, allocations
          edgeml-agent record --sensor SPEC --samples N --out FILE.csv [--seed N]
                                                                    record a sensor to CSV (replay format)

        sensors: sim:vibration[,fault=none|imbalance|bearing,fault-at=SECONDS,severity=X,drift-gain=X,drift-offset=X]
                 sim:environment   replay:FILE.csv[,rate=HZ,loop=true]   bme280[,bus=1,address=0x76]   bmp280[,…]
                 replay:FILE.wav[,channels=A+B,loop=true] (16-bit PCM)   mpu6050[,bus=1,address=0x68,rate=HZ]   gpio:PIN+PIN[,rate=HZ]
        """;

    public static async Task<int> MainAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "help" or "--help" or "-h")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }

        using var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            cts.Cancel();
        };

        // SIGTERM (systemd, kill, a supervisor) stops as cleanly as Ctrl-C: the pipeline ends, the last records are
        // delivered (a short grace), the agent says offline itself. Without this the runtime would just exit.
        using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            cts.Cancel();
        });

        try
        {
            var rest = new Arguments(args.Skip(1), args[0] == "status" ? StatusFlags : Flags);
            return args[0] switch
            {
                "run" => await RunCommand.RunAsync(rest, cts.Token).ConfigureAwait(false),
                "check-model" => CheckModelCommand.Run(rest),
                "bench" => BenchCommand.Run(rest),
                "record" => RecordCommand.Run(rest),
                "status" => StatusCommand.Run(rest),
                "enroll" => await EnrollCommand.RunAsync(rest, cts.Token).ConfigureAwait(false),
                "version" or "--version" => PrintVersion(),
                _ => throw new UsageException($"unknown command '{args[0]}'"),
            };
        }
        catch (UsageException e)
        {
            await Console.Error.WriteLineAsync($"error: {e.Message}\n\n{Usage}").ConfigureAwait(false);
            return 2;
        }
        catch (Exception e) when (e is ConfigurationException or ModelPackageException or InvalidDataException or Hosting.AgentStoppedException)
        {
            await Console.Error.WriteLineAsync($"error: {e.Message}").ConfigureAwait(false);
            return 1;
        }
        catch (OperationCanceledException)
        {
            return 130;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Never a stack trace for a user: one line that says what failed, and a non-zero exit for a supervisor.
            await Console.Error.WriteLineAsync($"error: unexpected {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}").ConfigureAwait(false);
            return 70;
        }
    }

    private static int PrintVersion()
    {
        Console.WriteLine($"edgeml-agent {typeof(AgentProgram).Assembly.GetName().Version}");
        return 0;
    }
}
