using System.Globalization;
using System.Net.Sockets;
using EdgeMl.Agent.Pipeline;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;

namespace EdgeMl.Agent.Hosting;

/// <summary>
/// Talks to systemd over <c>NOTIFY_SOCKET</c> (a <c>Type=notify</c> unit; sd_notify's datagram protocol, sent by
/// Microsoft.Extensions.Hosting.Systemd's <see cref="SystemdNotifier"/>): <c>READY=1</c> once the first pipeline runs and
/// its sensor answered, <c>WATCHDOG=1</c> every quarter of <c>WATCHDOG_USEC</c> but only while the pipeline makes
/// progress (<see cref="PipelineProgress"/>), <c>STOPPING=1</c> when the host stops, and a <c>STATUS=</c> line
/// <c>systemctl status</c> shows. A wedged pipeline (a sensor read or an inference that never returns) stops the pings,
/// and systemd restarts the agent after <c>WatchdogSec=</c>. Without <c>NOTIFY_SOCKET</c> it does nothing.
/// A notification that cannot be sent (the socket is gone) is logged once and does not stop the agent.
/// </summary>
public sealed partial class SystemdWatchdog(PipelineProgress progress, ILogger<SystemdWatchdog> logger) : BackgroundService
{
    private readonly SystemdNotifier _notifier = new();
    private bool _sendFailed;

    /// <summary>
    /// The watchdog interval systemd asks for (<c>WATCHDOG_USEC</c>, microseconds), or null when it asks for none or
    /// for another process (<c>WATCHDOG_PID</c>), as sd_watchdog_enabled(3) reads them.
    /// </summary>
    public static TimeSpan? WatchdogInterval()
    {
        var usec = Environment.GetEnvironmentVariable("WATCHDOG_USEC");
        if (!long.TryParse(usec, NumberStyles.None, CultureInfo.InvariantCulture, out var us) || us <= 0) return null;
        var pid = Environment.GetEnvironmentVariable("WATCHDOG_PID");
        if (!string.IsNullOrEmpty(pid) && pid != Environment.ProcessId.ToString(CultureInfo.InvariantCulture)) return null;
        return TimeSpan.FromMicroseconds(us);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_notifier.IsEnabled) return;
        var watchdog = WatchdogInterval();
        try
        {
            // Ready means the agent works, not merely that the process started: the model is loaded and the sensor answered.
            using (var poll = new PeriodicTimer(TimeSpan.FromMilliseconds(100)))
            {
                while (!progress.Started) await poll.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false);
            }

            Send("READY=1\nSTATUS=running");
            LogReady(logger, watchdog is { } w ? $"; watchdog every {w.TotalSeconds:0.###} s while the pipeline makes progress" : "");
            if (watchdog is null) return;

            // A quarter of the interval: up to two checks in a row without progress (a window due just before a check)
            // still leave a ping inside the interval.
            using var timer = new PeriodicTimer(watchdog.Value / 4);
            var stalled = false;
            progress.Check();
            Send("WATCHDOG=1");
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                var check = progress.Check();
                if (check.Advanced)
                {
                    if (stalled) LogResumed(logger);
                    stalled = false;
                    Send(string.Create(CultureInfo.InvariantCulture,
                        $"WATCHDOG=1\nSTATUS=running: {check.Counters.SensorReads} sensor reads, {check.Counters.Inferences} inferences"));
                }
                else if (!stalled)
                {
                    stalled = true;
                    LogStalled(logger, check.Stalled);
                    Send($"STATUS=pipeline stalled: {check.Stalled}; watchdog pings withheld");
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_notifier.IsEnabled) Send("STOPPING=1");
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    private void Send(string message)
    {
        try
        {
            _notifier.Notify(new ServiceState(message));
        }
        catch (SocketException e)
        {
            if (_sendFailed) return;
            _sendFailed = true;
            LogSendFailed(logger, Environment.GetEnvironmentVariable("NOTIFY_SOCKET") ?? "", e.Message);
        }
    }

    [LoggerMessage(EventId = 1800, Level = LogLevel.Information, Message = "systemd told ready{Watchdog}")]
    private static partial void LogReady(ILogger logger, string watchdog);

    [LoggerMessage(EventId = 1801, Level = LogLevel.Warning, Message = "Pipeline stalled ({Why}): watchdog pings withheld, systemd restarts the agent if it stays so")]
    private static partial void LogStalled(ILogger logger, string why);

    [LoggerMessage(EventId = 1802, Level = LogLevel.Information, Message = "Pipeline moves again: watchdog pings resumed")]
    private static partial void LogResumed(ILogger logger);

    [LoggerMessage(EventId = 1803, Level = LogLevel.Warning, Message = "Cannot notify systemd at NOTIFY_SOCKET={Socket}: {Error} (said once)")]
    private static partial void LogSendFailed(ILogger logger, string socket, string error);
}
