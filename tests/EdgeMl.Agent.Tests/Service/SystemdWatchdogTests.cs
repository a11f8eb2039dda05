using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Service;

/// <summary>
/// The agent under a service manager's eyes: this test plays systemd's side of sd_notify — a datagram socket in
/// NOTIFY_SOCKET and WATCHDOG_USEC set — and runs the real agent (this build, as a process) on a replayed sensor that
/// reads from a FIFO the test writes. Stopping the writes leaves the sensor read blocked: a wedged pipeline.
/// </summary>
public sealed class SystemdWatchdogTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Agent_says_ready_then_pings_only_while_the_pipeline_moves()
    {
        var socketPath = _dir.File("notify.sock");
        using var notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        notify.Bind(new UnixDomainSocketEndPoint(socketPath));
        var fifo = _dir.File("sensor.csv");
        Assert.Equal(0, AgentProcessRun("mkfifo", fifo));
        var config = _dir.File("agent.json");
        File.WriteAllText(config, $$"""
            { "Agent": { "Model": "{{TestPackages.VibrationInt8}}", "Sensor": "replay:{{fifo}}", "HealthIntervalSeconds": 0 } }
            """);

        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "edgeml-agent.dll"), "run", "--config", config, "--log-format", "json" }) psi.ArgumentList.Add(a);
        psi.Environment["NOTIFY_SOCKET"] = socketPath;
        psi.Environment["WATCHDOG_USEC"] = "1000000"; // 1 s: checks every 250 ms
        var stderr = new StringBuilder();
        using var agent = Process.Start(psi)!;
        agent.OutputDataReceived += (_, _) => { };
        agent.ErrorDataReceived += (_, e) => { lock (stderr) stderr.AppendLine(e.Data); };
        agent.BeginOutputReadLine();
        agent.BeginErrorReadLine();

        using var stop = new CancellationTokenSource();
        var feeding = new ManualResetEventSlim(true);
        var feeder = Task.Run(() => Feed(fifo, feeding, stop.Token));
        try
        {
            var first = await Receive(notify, TimeSpan.FromSeconds(90), () => Stderr(stderr));
            Assert.StartsWith("READY=1", first, StringComparison.Ordinal);

            // Progress: WATCHDOG=1 keeps coming, with the counters in STATUS.
            for (var i = 0; i < 4; i++)
            {
                Assert.StartsWith("WATCHDOG=1", await ReceiveNext(notify, m => m.StartsWith("WATCHDOG=1", StringComparison.Ordinal), TimeSpan.FromSeconds(10), stderr), StringComparison.Ordinal);
            }

            // Wedge: no more rows; the read blocks once the pipe's buffer is drained. The pings stop.
            feeding.Reset();
            var stalled = await ReceiveNext(notify, m => m.StartsWith("STATUS=pipeline stalled", StringComparison.Ordinal), TimeSpan.FromSeconds(30), stderr);
            Assert.Contains("no sensor read ended", stalled, StringComparison.Ordinal);
            var during = await Collect(notify, TimeSpan.FromSeconds(3)); // three watchdog intervals
            Assert.DoesNotContain(during, m => m.Contains("WATCHDOG=1", StringComparison.Ordinal));
            Assert.False(agent.HasExited, "the agent must keep running (systemd, not the agent, ends a wedged agent)");

            // Rows again: the pings resume.
            feeding.Set();
            await ReceiveNext(notify, m => m.StartsWith("WATCHDOG=1", StringComparison.Ordinal), TimeSpan.FromSeconds(15), stderr);
            // The stall and the recovery, logged as JSON with their event ids (stderr comes through a pipe: it can trail the
            // datagram by a moment, so it is waited for, not read once).
            await LoggedAsync(stderr, "\"EventId\":1801");
            await LoggedAsync(stderr, "\"EventId\":1802");

            // Wedged again, then stopped as systemd stops it (SIGTERM): the blocked sensor read is left behind and the
            // agent ends cleanly, exit 0 — not a crash, not System.CommandLine's exit 143 two seconds after the signal.
            feeding.Reset();
            await ReceiveNext(notify, m => m.StartsWith("STATUS=pipeline stalled", StringComparison.Ordinal), TimeSpan.FromSeconds(30), stderr);
            Assert.Equal(0, AgentProcessRun("kill", "-TERM", agent.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            using (var exited = new CancellationTokenSource(TimeSpan.FromSeconds(20)))
            {
                await agent.WaitForExitAsync(exited.Token);
            }

            Assert.True(agent.ExitCode == 0, $"exit {agent.ExitCode}: {Stderr(stderr)}");
            await LoggedAsync(stderr, "\"EventId\":1204"); // stopping without the sensor stage
            Assert.DoesNotContain("Unhandled", Stderr(stderr), StringComparison.Ordinal);
        }
        finally
        {
            if (!agent.HasExited) agent.Kill(entireProcessTree: true);
            await agent.WaitForExitAsync();
            await stop.CancelAsync();
            feeding.Set();
            // The feeder ends by itself (cancelled, or EPIPE once the agent is gone) — unless it still waits for a reader
            // to open the FIFO (the agent never did): then be that reader. Clean-up never throws: a failure of the test
            // itself must not be hidden behind one of the clean-up's.
            if (await Task.WhenAny(feeder, Task.Delay(TimeSpan.FromSeconds(5))) != feeder)
            {
                var reader = Task.Run(() => new FileStream(fifo, FileMode.Open, FileAccess.Read).Dispose());
                await Task.WhenAny(reader, Task.Delay(TimeSpan.FromSeconds(10)));
                await Task.WhenAny(feeder, Task.Delay(TimeSpan.FromSeconds(30)));
            }
        }
    }

    /// <summary>Waits (up to 10 s) until the agent's stderr holds <paramref name="text"/>; fails naming it and showing stderr.</summary>
    private static async Task LoggedAsync(StringBuilder stderr, string text)
    {
        var deadline = Environment.TickCount64 + 10_000;
        while (!Stderr(stderr).Contains(text, StringComparison.Ordinal))
        {
            Assert.True(Environment.TickCount64 < deadline, $"{text} was not logged: {Stderr(stderr)}");
            await Task.Delay(50);
        }
    }

    private static string Stderr(StringBuilder stderr)
    {
        lock (stderr) return stderr.ToString();
    }

    /// <summary>Writes the bundled vibration recording's rows into the FIFO, over and over, while <paramref name="feeding"/> is set.</summary>
    private static void Feed(string fifo, ManualResetEventSlim feeding, CancellationToken ct)
    {
        var rows = File.ReadAllLines(Path.Combine(TestPackages.RepositoryRoot, "models/vibration/test/bearing_fault-32003.csv"));
        try
        {
            using var writer = new StreamWriter(new FileStream(fifo, FileMode.Open, FileAccess.Write));
            writer.WriteLine(rows[0]);
            for (var i = 0; !ct.IsCancellationRequested; i++)
            {
                if (!feeding.IsSet)
                {
                    writer.Flush();
                    feeding.Wait(ct);
                }

                writer.WriteLine(rows[1 + (i % (rows.Length - 1))]);
                if (i % 100 == 0) writer.Flush();
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            // The agent was killed (EPIPE) or the test ended.
        }
    }

    private static int AgentProcessRun(string program, params string[] args)
    {
        using var p = Process.Start(program, args);
        p.WaitForExit();
        return p.ExitCode;
    }

    private static async Task<string> Receive(Socket socket, TimeSpan timeout, Func<string> context)
    {
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            return Encoding.UTF8.GetString(buffer, 0, n);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"no notification in {timeout.TotalSeconds} s; agent said:\n{context()}");
            throw;
        }
    }

    private static async Task<string> ReceiveNext(Socket socket, Func<string, bool> match, TimeSpan timeout, StringBuilder stderr)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) Assert.Fail($"no matching notification in {timeout.TotalSeconds} s; agent said:\n{Stderr(stderr)}");
            var m = await Receive(socket, left, () => Stderr(stderr));
            if (match(m)) return m;
        }
    }

    private static async Task<List<string>> Collect(Socket socket, TimeSpan window)
    {
        var all = new List<string>();
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(window);
        try
        {
            while (true)
            {
                var n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
                all.Add(Encoding.UTF8.GetString(buffer, 0, n));
            }
        }
        catch (OperationCanceledException)
        {
            return all;
        }
    }
}
