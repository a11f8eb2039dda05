using System.Diagnostics;
using System.Text;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.Agent.Tests.Service;

/// <summary>
/// A sensor that blocks while it is being opened — a replay FIFO nobody writes to: open() waits for a writer, with no
/// way to cancel it — must not hold up a stop. The real agent (this build, as a process, as the service runs it) gets
/// SIGTERM while it waits, and ends at once with exit 0, not after the 15-s stop bound with exit 1.
/// </summary>
public sealed class BlockedSensorStopTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Sigterm_while_a_fifo_sensor_waits_for_its_writer_stops_the_agent_at_once_with_exit_0()
    {
        var fifo = _dir.File("sensor.csv");
        using (var mkfifo = Process.Start("mkfifo", [fifo]))
        {
            await mkfifo.WaitForExitAsync();
            Assert.Equal(0, mkfifo.ExitCode);
        }

        // The metrics endpoint starts just before the runtime (and its sensor) is built: its log line says the agent got there.
        var config = _dir.File("agent.json");
        File.WriteAllText(config, $$"""
            { "Agent": { "Model": "{{TestPackages.VibrationInt8}}", "Sensor": "replay:{{fifo}}", "HealthIntervalSeconds": 0,
                         "Metrics": { "Port": {{Mosquitto.FreePort()}} } } }
            """);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "edgeml-agent.dll"), "run", "--config", config, "--log-format", "json" }) psi.ArgumentList.Add(a);
        var stderr = new StringBuilder();
        using var agent = Process.Start(psi)!;
        agent.OutputDataReceived += (_, _) => { };
        agent.ErrorDataReceived += (_, e) => { lock (stderr) stderr.AppendLine(e.Data); };
        agent.BeginOutputReadLine();
        agent.BeginErrorReadLine();
        try
        {
            var deadline = Environment.TickCount64 + 60_000;
            while (!Text(stderr).Contains("\"EventId\":1013", StringComparison.Ordinal))
            {
                Assert.False(agent.HasExited, $"the agent exited ({(agent.HasExited ? agent.ExitCode : 0)}): {Text(stderr)}");
                Assert.True(Environment.TickCount64 < deadline, $"the agent did not start: {Text(stderr)}");
                await Task.Delay(50);
            }

            // Blocked in the FIFO's open() now (nobody writes; the agent cannot get past it).
            using (var kill = Process.Start("kill", ["-TERM", agent.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                await kill.WaitForExitAsync();
            }

            var stopwatch = Stopwatch.StartNew();
            using (var exited = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
            {
                await agent.WaitForExitAsync(exited.Token);
            }

            Assert.True(agent.ExitCode == 0, $"exit {agent.ExitCode}: {Text(stderr)}");
            Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(5), $"the stop took {stopwatch.Elapsed.TotalSeconds:0.0} s: {Text(stderr)}");
            Assert.DoesNotContain("did not stop within", Text(stderr), StringComparison.Ordinal);
            Assert.DoesNotContain("Unhandled", Text(stderr), StringComparison.Ordinal);
        }
        finally
        {
            if (!agent.HasExited) agent.Kill(entireProcessTree: true);
            await agent.WaitForExitAsync();
        }
    }

    private static string Text(StringBuilder stderr)
    {
        lock (stderr) return stderr.ToString();
    }
}
