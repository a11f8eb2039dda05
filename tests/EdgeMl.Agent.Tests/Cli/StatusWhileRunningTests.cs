using System.Text.RegularExpressions;
using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Cli;

public sealed class StatusWhileRunningTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Status_reads_the_outbox_while_the_agent_runs_and_leaves_the_agents_files_alone()
    {
        var agent = AgentProcess.Start("run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", "0", "--quiet",
            "--Agent:Pipeline:Realtime=true", "--health-every", "1", "--data", _dir.Path);
        try
        {
            await Pipeline.Eventually.True(() => File.Exists(Hosting.AgentRuntime.HealthPath(_dir.Path)), "the first health report", 60_000);
            var waiting = new List<long>();
            for (var i = 0; i < 3; i++)
            {
                var (code, stdout, stderr) = AgentProcess.Agent("status", "--data", _dir.Path);
                Assert.True(code == 0, stderr);
                Assert.DoesNotContain("moved aside", stdout, StringComparison.Ordinal); // never mistaken for a damaged file
                waiting.Add(long.Parse(Regex.Match(stdout, @"telemetry\s+(\d+)\s").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
            }

            Assert.True(waiting[^1] > 0, "records stored so far");
            Assert.False(agent.HasExited, "the agent runs on beside status");
        }
        finally
        {
            if (!agent.HasExited) agent.Kill(entireProcessTree: true);
            await agent.WaitForExitAsync();
            agent.Dispose();
        }
    }
}
