using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Alerts;

/// <summary>
/// Raises an <c>offline</c> alert for a device not seen for <see cref="HubSettings.OfflineAfter"/> (its presence is not
/// online and the last thing the hub heard from it is older than that), and clears it when the device is online again.
/// Checked every quarter of that time (at most every 15 s), on the replica that leads <c>offline-alerts</c>
/// (<see cref="IHubStore.Leads"/>), so a fleet gets each alert once. Revoked devices and devices never seen raise none.
/// A failed check (database away) is logged and counted, and the next one tries again.
/// </summary>
public sealed partial class OfflineAlerts(IHubStore store, FleetAlerts alerts, HubSettings settings, TimeProvider time, ILogger<OfflineAlerts> logger) : BackgroundService
{
    private long _failures;

    /// <summary>Checks that failed so far.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var after = settings.OfflineAfterSpan();
        var every = TimeSpan.FromMilliseconds(Math.Clamp(after.TotalMilliseconds / 4, 250, 15_000));
        using var timer = new PeriodicTimer(every, time);
        while (await NextTickAsync(timer, stoppingToken).ConfigureAwait(false))
        {
            try
            {
                await Task.Run(() => Check(after), stoppingToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                Interlocked.Increment(ref _failures);
                LogFailed(logger, e.Message);
            }
        }
    }

    /// <summary>One pass: raise for devices away longer than <paramref name="after"/>, clear for those back online.</summary>
    public void Check(TimeSpan after)
    {
        if (!store.Leads("offline-alerts")) return;
        var now = time.GetUtcNow();
        var active = store.Alerts(new AlertQuery(Active: true, Kind: "offline", Limit: int.MaxValue)).Select(a => a.Device).ToHashSet(StringComparer.Ordinal);
        foreach (var d in store.DeviceRows())
        {
            var away = d.Presence == FleetPresence.Offline && d.Enrollment != "revoked" && d.LastSeen is { } seen && now - seen >= after;
            if (away && !active.Contains(d.Id))
            {
                alerts.Raise("offline", d.Id, "", now, "warning", $"not seen since {d.LastSeen:yyyy-MM-ddTHH:mm:ssZ} (more than {Describe(after)})");
            }
            else if (!away && active.Contains(d.Id) && (d.Presence == FleetPresence.Online || d.Enrollment == "revoked"))
            {
                alerts.Clear("offline", d.Id, "", now);
            }
        }
    }

    private static string Describe(TimeSpan t) =>
        t.TotalDays >= 1 && t.TotalDays % 1 == 0 ? $"{t.TotalDays:0}d" : t.TotalHours >= 1 && t.TotalHours % 1 == 0 ? $"{t.TotalHours:0}h"
        : t.TotalMinutes >= 1 && t.TotalMinutes % 1 == 0 ? $"{t.TotalMinutes:0}m" : $"{t.TotalSeconds:0.#}s";

    [LoggerMessage(EventId = 2810, Level = LogLevel.Warning, Message = "Offline alert check failed (tried again at the next one): {Error}")]
    private static partial void LogFailed(ILogger logger, string error);

    /// <summary>The next tick, false once stopping: also when the host stops before its start completed (a port in use), where an exception here would be logged as the service's crash.</summary>
    private static async Task<bool> NextTickAsync(PeriodicTimer timer, CancellationToken stoppingToken)
    {
        try
        {
            return await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            return false;
        }
    }
}
