using EdgeMl.Agent.Configuration;
using Microsoft.Extensions.Logging;

namespace EdgeMl.Agent.Hosting;

/// <summary>
/// Runs the agent on the model its slots say (<see cref="Updates.ModelSlots"/>), and again on another one when an
/// update is activated or rolled back. A model on trial that cannot even be loaded is rolled back at once.
/// Without a data directory there are no slots: the configured package runs.
/// </summary>
public static partial class AgentHost
{
    /// <summary>Runs until stopped or the pipeline ends; each pipeline started is shown to <paramref name="progress"/> (the watchdog's view).</summary>
    public static async Task RunAsync(AgentOptions options, ILoggerFactory loggers, CancellationToken ct, Pipeline.PipelineProgress? progress = null)
    {
        var logger = loggers.CreateLogger("EdgeMl.Agent");
        using var metrics = StartMetrics(options.Metrics, logger);
        Updates.ModelSlots? slots = null;
        if (options.DataDirectory.Length > 0)
        {
            slots = new Updates.ModelSlots(options.DataDirectory, options.Model) { CrashPoint = Updates.ModelSlots.CrashPointFromEnvironment() };
        }

        while (!ct.IsCancellationRequested)
        {
            if (slots is not null)
            {
                // The slots know the configured package; what runs this time is theirs to say.
                options.Model = slots.Resolve(DateTimeOffset.UtcNow);
                if (slots.ConfigurationChanged is { } why) LogConfigChanged(logger, why);
                if (slots.ActiveSlot != Updates.ModelSlots.Configured) LogSlot(logger, slots.ActiveSlot, Updates.ModelSlots.Describe(slots.ModelOf(slots.ActiveSlot)), slots.InTrial);
            }

            AgentRuntime runtime;
            try
            {
                runtime = await BuildAsync(options, loggers, slots, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return; // stopped while the sensor was still being opened: a clean stop
            }
            catch (Exception e) when (slots is not null && slots.ActiveSlot != Updates.ModelSlots.Configured && slots.InTrial && e is not OperationCanceledException)
            {
                var reason = $"cannot start on it: {e.Message}";
                LogLoadFailed(logger, Updates.ModelSlots.Describe(slots.ModelOf(slots.ActiveSlot)), reason);
                if (!slots.RollBack(reason, bad: true, DateTimeOffset.UtcNow)) throw;
                continue;
            }

            progress?.Watch(runtime.Health);
            using (runtime)
            {
                metrics?.Attach(runtime);
                try
                {
                    if (!await runtime.RunAsync(ct).ConfigureAwait(false)) return;
                }
                finally
                {
                    metrics?.Detach(runtime);
                }
            }
        }
    }

    /// <summary>
    /// Builds the runtime on a thread of its own and waits for it only as long as the agent is not stopped. Opening a
    /// sensor can block with no way to cancel it — a replay FIFO's open() waits for a writer, its first read for a row —
    /// and a stop must not wait for that: the build is left behind (a background thread, ended with the process), and
    /// a runtime it still completes later is disposed.
    /// </summary>
    private static async Task<AgentRuntime> BuildAsync(AgentOptions options, ILoggerFactory loggers, Updates.ModelSlots? slots, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        var build = Task.Factory.StartNew(() => new AgentRuntime(options, loggers, slots: slots), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            return await build.WaitAsync(ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            _ = build.ContinueWith(static t => t.Result.Dispose(), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
            throw;
        }
    }

    /// <summary>The metrics endpoint when <c>Agent:Metrics:Port</c> is set (else null: nothing is built).</summary>
    /// <exception cref="ConfigurationException">The port cannot be listened on.</exception>
    private static Metrics.AgentMetrics? StartMetrics(Metrics.MetricsSettings settings, ILogger logger)
    {
        if (settings.Port == 0) return null;
        try
        {
            var metrics = new Metrics.AgentMetrics(settings);
            LogMetrics(logger, settings.Address, settings.Port);
            return metrics;
        }
        catch (Exception e) when (e is System.Net.HttpListenerException or System.Net.Sockets.SocketException or InvalidOperationException)
        {
            throw new ConfigurationException($"{AgentOptions.Section}:Metrics:Port", $"cannot serve metrics on {settings.Address}:{settings.Port}: {e.Message}");
        }
    }

    [LoggerMessage(EventId = 1013, Level = LogLevel.Information, Message = "Metrics: http://{Address}:{Port}/metrics (Prometheus text format)")]
    private static partial void LogMetrics(ILogger logger, string address, int port);

    [LoggerMessage(EventId = 1006, Level = LogLevel.Information, Message = "Model slot {Slot}: {Model}{Trial}")]
    private static partial void LogSlotCore(ILogger logger, string slot, string model, string trial);

    private static void LogSlot(ILogger logger, string slot, string model, bool trial) => LogSlotCore(logger, slot, model, trial ? " (on trial: watch period)" : "");

    [LoggerMessage(EventId = 1008, Level = LogLevel.Warning, Message = "{Why}")]
    private static partial void LogConfigChanged(ILogger logger, string why);

    [LoggerMessage(EventId = 1007, Level = LogLevel.Error, Message = "{Model} is on trial and {Reason}; rolling back")]
    private static partial void LogLoadFailed(ILogger logger, string model, string reason);
}
