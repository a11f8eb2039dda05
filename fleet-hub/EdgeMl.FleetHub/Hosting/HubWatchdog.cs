using System.Globalization;
using System.Net.Sockets;
using Microsoft.Extensions.Hosting.Systemd;

namespace EdgeMl.FleetHub.Hosting;

/// <summary>
/// systemd's watchdog for the hub (<c>WatchdogSec=</c> in the unit): <c>WATCHDOG=1</c> every quarter of
/// <c>WATCHDOG_USEC</c>, once the host has started, for as long as the hub's thread pool runs its timers — a hub whose
/// threads are all blocked (a deadlock, a starved pool) stops pinging and systemd restarts it. Without
/// <c>NOTIFY_SOCKET</c>/<c>WATCHDOG_USEC</c> it does nothing. A ping that cannot be sent is logged once.
/// </summary>
public sealed partial class HubWatchdog(IHostApplicationLifetime lifetime, ILogger<HubWatchdog> logger) : BackgroundService
{
    private readonly SystemdNotifier _notifier = new();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_notifier.IsEnabled || Interval() is not { } interval) return;
        var started = new TaskCompletionSource();
        using var registration = lifetime.ApplicationStarted.Register(() => started.TrySetResult());
        var failed = false;
        try
        {
            await started.Task.WaitAsync(stoppingToken).ConfigureAwait(false);
            using var timer = new PeriodicTimer(interval / 4);
            do
            {
                try
                {
                    _notifier.Notify(new ServiceState("WATCHDOG=1"));
                }
                catch (SocketException e) when (!failed)
                {
                    failed = true;
                    LogSendFailed(logger, e.Message);
                }
                catch (SocketException)
                {
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary><c>WATCHDOG_USEC</c> when it is meant for this process (<c>WATCHDOG_PID</c>), as sd_watchdog_enabled(3) reads it.</summary>
    private static TimeSpan? Interval()
    {
        if (!long.TryParse(Environment.GetEnvironmentVariable("WATCHDOG_USEC"), NumberStyles.None, CultureInfo.InvariantCulture, out var us) || us <= 0) return null;
        var pid = Environment.GetEnvironmentVariable("WATCHDOG_PID");
        return !string.IsNullOrEmpty(pid) && pid != Environment.ProcessId.ToString(CultureInfo.InvariantCulture) ? null : TimeSpan.FromMicroseconds(us);
    }

    [LoggerMessage(EventId = 2900, Level = LogLevel.Warning, Message = "Cannot send systemd's watchdog ping: {Error} (said once)")]
    private static partial void LogSendFailed(ILogger logger, string error);
}
