using EdgeMl.Agent.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeMl.Agent.Hosting;

/// <summary>The agent as a hosted service (systemd on a device): runs the pipeline until the host stops.</summary>
public sealed class AgentService(AgentOptions options, ILoggerFactory loggers, IHostApplicationLifetime lifetime, ServiceOutcome outcome, Pipeline.PipelineProgress progress) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await AgentHost.RunAsync(options, loggers, stoppingToken, progress).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Reported by the command after the host stops: a clear message and exit 1, not a host crash dump.
            outcome.Failure = e;
        }
        finally
        {
            // A replay that ended or a count that was reached ends the service too.
            lifetime.StopApplication();
        }
    }
}

public sealed class ServiceOutcome
{
    public Exception? Failure { get; set; }
}
