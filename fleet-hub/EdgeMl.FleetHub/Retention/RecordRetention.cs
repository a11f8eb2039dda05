using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Retention;

/// <summary>
/// Removes records older than <see cref="HubSettings.RetentionDays"/> (by the hub's receive time; the PostgreSQL store
/// drops whole day partitions by the records' own time and makes the coming days' partitions) at start and then
/// every <see cref="HubSettings.RetentionIntervalMinutes"/>. A failed pass (database away, disk error) is logged and
/// counted and the next pass tries again; it never stops the hub. With several replicas on one PostgreSQL store
/// only the one that leads <c>retention</c> (<see cref="IHubStore.Leads"/>) deletes.
/// </summary>
public sealed partial class RecordRetention(IHubStore store, HubSettings settings, TimeProvider time, ILogger<RecordRetention> logger) : BackgroundService
{
    private long _failures;

    /// <summary>Passes that failed so far.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (settings.RetentionDays <= 0) return;
        using var timer = new PeriodicTimer(TimeSpan.FromMinutes(Math.Max(1, settings.RetentionIntervalMinutes)), time);
        do
        {
            try
            {
                var cutoff = time.GetUtcNow().AddDays(-settings.RetentionDays);
                var removed = await Task.Run(() => store.Leads("retention") ? store.RemoveRecordsBefore(cutoff) : 0, stoppingToken).ConfigureAwait(false);
                if (removed > 0) LogRemoved(logger, removed, cutoff);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                Interlocked.Increment(ref _failures);
                LogFailed(logger, e.Message);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    [LoggerMessage(EventId = 2700, Level = LogLevel.Information, Message = "Retention: removed {Records} record(s) received before {Cutoff:u}")]
    private static partial void LogRemoved(ILogger logger, long records, DateTimeOffset cutoff);

    [LoggerMessage(EventId = 2701, Level = LogLevel.Warning, Message = "Retention pass failed (tried again at the next pass): {Error}")]
    private static partial void LogFailed(ILogger logger, string error);
}
