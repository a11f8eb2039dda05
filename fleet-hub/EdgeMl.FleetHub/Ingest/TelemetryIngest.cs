using System.Buffers;
using System.Collections.Concurrent;
using System.Text.Json;
using System.Threading.Channels;
using EdgeMl.FleetHub.Store;
using EdgeMl.Protocol.Wire;
using Microsoft.Extensions.Logging;

namespace EdgeMl.FleetHub.Ingest;

/// <summary>
/// Takes what devices publish under <c>edgeml/{device}/…</c>: batches on <c>tele</c>, <c>health</c> and <c>drift</c> are
/// stored (de-duplicated) before the broker acknowledges them; <c>status</c> sets presence; <c>state/reported</c> is
/// kept on the device. Every byte is untrusted: payloads are parsed into typed protocol records and validated
/// (<see cref="DeviceMessageParser"/>) on the publishing connection's own thread, before anything is queued; a record
/// that fails is dropped and counted per device and reason, the rest of its batch is stored.
/// <para>
/// Group commit: one writer stores whatever batches are waiting — from many devices — in one transaction, and every
/// waiting publisher is answered when that transaction is committed. The writer never dies: a failed group is retried
/// one batch at a time, so one poison batch cannot take others down with it; a batch that still fails is acknowledged
/// and quarantined with its reason (<see cref="IHubStore.Quarantine"/>), unless the store itself cannot write (an I/O
/// error: disk full), in which case it is not acknowledged and the device sends it again later.
/// </para>
/// </summary>
public sealed partial class TelemetryIngest : IAsyncDisposable
{
    private const int MaxRecordsPerCommit = 50_000;
    private static readonly long Year2020Ms = new DateTimeOffset(2020, 1, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();

    private readonly IHubStore _store;

    /// <summary>
    /// Called on the writer, after the commit, with each batch that holds health or alert records (the device and the batch's
    /// records; a re-sent batch too: the callee is idempotent). Its failures are logged, never the writer's.
    /// </summary>
    public Action<string, IReadOnlyList<IncomingRecord>>? RecordsStored { get; set; }

    /// <summary>Called after a device's presence was stored (device, <c>online</c>/<c>offline</c>, the hub's time). Its failures are logged.</summary>
    public Action<string, string, DateTimeOffset>? PresenceStored { get; set; }

    /// <summary>Called (on the writer) with the devices whose drift windows were just stored.</summary>
    public Action<IReadOnlyList<string>>? DriftStored { get; set; }
    private readonly TimeProvider _time;
    private readonly ILogger<TelemetryIngest> _logger;
    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _writer;
    private readonly LatencyWindow _e2e = new(1 << 17);
    private readonly ConcurrentDictionary<string, DeviceCounters> _perDevice = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _byReason = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _refusedByReason = new(StringComparer.Ordinal);
    private long _received;
    private long _malformed;
    private long _refused;
    private long _stored;
    private long _duplicates;
    private long _commits;
    private long _quarantined;
    private long _storeErrors;
    private long _implausibleTime;

    public TelemetryIngest(IHubStore store, TimeProvider time, ILogger<TelemetryIngest> logger)
    {
        _store = store;
        _time = time;
        _logger = logger;
        _writer = Task.Factory.StartNew(WriteLoopAsync, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
    }

    /// <summary>Bounds on one device's messages (records per batch, record size, names, counts).</summary>
    public WireLimits Limits { get; init; } = WireLimits.Default;

    /// <summary>Records (or whole payloads) refused as malformed, all devices.</summary>
    public long Malformed => Interlocked.Read(ref _malformed);

    /// <summary>Publishes refused by the broker's ACL (a device writing outside its own topics, retained where not allowed, too large).</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>Counts a publish the broker refused, per device and reason (<c>acl</c>, <c>retained</c>, <c>unknown-topic</c>, <c>too-large</c>).</summary>
    public void CountRefused(string device, string reason)
    {
        Interlocked.Increment(ref _refused);
        _refusedByReason.AddOrUpdate(reason, 1, (_, n) => n + 1);
        Counters(device).Add("refused:" + reason);
    }

    /// <summary>Well-formed telemetry, health and drift records handed to the store so far (new ones and duplicates).</summary>
    public long Received => Interlocked.Read(ref _received);

    /// <summary>New records stored so far.</summary>
    public long Stored => Interlocked.Read(ref _stored);

    /// <summary>Records the store already had (re-sent after a lost acknowledgement) so far.</summary>
    public long Duplicates => Interlocked.Read(ref _duplicates);

    /// <summary>Group commits so far.</summary>
    public long Commits => Interlocked.Read(ref _commits);

    /// <summary>Batches quarantined so far.</summary>
    public long Quarantined => Interlocked.Read(ref _quarantined);

    /// <summary>Store failures on well-formed messages so far (not acknowledged).</summary>
    public long StoreErrors => Interlocked.Read(ref _storeErrors);

    /// <summary>Records stored with an implausible production time so far.</summary>
    public long ImplausibleTime => Interlocked.Read(ref _implausibleTime);

    /// <summary>Malformed records (or payloads) so far, by reason (<c>json</c>, <c>data</c>, <c>seq</c> …), all devices.</summary>
    public IReadOnlyDictionary<string, long> MalformedByReason => new SortedDictionary<string, long>(_byReason, StringComparer.Ordinal);

    /// <summary>Publishes the broker refused so far, by reason (<c>acl</c>, <c>retained</c>, <c>unknown-topic</c>, <c>too-large</c>), all devices.</summary>
    public IReadOnlyDictionary<string, long> RefusedByReason => new SortedDictionary<string, long>(_refusedByReason, StringComparer.Ordinal);

    /// <summary>
    /// Called on the writer after each group commit with the seconds the store took for it (for the commit-latency
    /// histogram of <c>/metrics</c>); must be quick and must not throw.
    /// </summary>
    public Action<double>? CommitTimed { get; set; }

    /// <summary>What ingest refused from one device, by reason (<c>refused:…</c> for the broker's refusals); empty when nothing.</summary>
    public IReadOnlyDictionary<string, long> DeviceRejections(string device) =>
        _perDevice.TryGetValue(device, out var c) ? c.Snapshot() : new Dictionary<string, long>();

    public IngestStats Stats()
    {
        var (p50, p99, n) = _e2e.Percentiles();
        return new IngestStats(Malformed, Refused, Interlocked.Read(ref _stored), Interlocked.Read(ref _duplicates), Interlocked.Read(ref _commits), p50, p99, n,
            Interlocked.Read(ref _quarantined), Interlocked.Read(ref _storeErrors), Interlocked.Read(ref _implausibleTime),
            new SortedDictionary<string, long>(_byReason, StringComparer.Ordinal),
            _perDevice.Where(d => d.Value.Any).OrderBy(d => d.Key, StringComparer.Ordinal).ToDictionary(d => d.Key, d => d.Value.Snapshot()));
    }

    /// <summary>Which devices ran which model when: a change of the device's active model goes into the audit trail.</summary>
    private void NoteModelChange(string device, Protocol.Packages.ReportedState reported)
    {
        string? before = null;
        if (_store.FindDevice(device)?.ReportedJson is { } json)
        {
            try
            {
                before = JsonSerializer.Deserialize(json, Protocol.Json.CompactJsonContext.Default.ReportedState)?.Active;
            }
            catch (JsonException)
            {
            }
        }

        if (reported.Active is null || reported.Active == before) return;
        var why = reported.Phase == "rolled-back" ? $" (rolled back from {reported.Name}@{reported.Version}: {reported.Reason})" : "";
        _store.AddAudit(new Store.AuditEntry(reported.At, device, "device.model", $"model {reported.Active}", $"{before ?? "unknown"} → {reported.Active}{why}", device));
    }

    /// <summary>
    /// Handles one publish of <paramref name="device"/> on <c>edgeml/{device}/{subtopic}</c> (the broker has checked that
    /// the device owns the topic). Never throws: <see cref="IngestOutcome.Retry"/> when the message must not be
    /// acknowledged (it could not be stored, and sending it again may succeed), <see cref="IngestOutcome.Dropped"/> when
    /// it is acknowledged but must go no further (malformed: not retained, not forwarded).
    /// </summary>
    public async Task<IngestOutcome> HandleAsync(string device, string subtopic, ReadOnlySequence<byte> payload)
    {
        try
        {
            switch (subtopic)
            {
                case "tele" or "health" or "drift":
                    var parsed = DeviceMessageParser.ParseBatch(device, subtopic, payload, Limits);
                    foreach (var r in parsed.Rejected) Reject(device, subtopic, r.Reason, r.Detail);
                    if (parsed.Records.Count == 0) return IngestOutcome.Dropped;
                    var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
                    var records = new List<IncomingRecord>(parsed.Records.Count);
                    foreach (var r in parsed.Records)
                    {
                        if (r.At < Year2020Ms || r.At > now + 86_400_000)
                        {
                            // Stored (it is the device's data), but its time is not trusted: counted and flagged.
                            Interlocked.Increment(ref _implausibleTime);
                            Counters(device).Add("flag:implausible-time");
                        }

                        records.Add(new IncomingRecord(r.Boot, r.Seq, DeviceMessageParser.ClassName(r.Class), r.At, r.Data));
                    }

                    var pending = new Pending(device, records, payload.Length);
                    Interlocked.Add(ref _received, records.Count);
                    await _queue.Writer.WriteAsync(pending).ConfigureAwait(false);
                    return await pending.Done.Task.ConfigureAwait(false) ? IngestOutcome.Stored : IngestOutcome.Retry;
                case "state/reported":
                    var reported = DeviceMessageParser.ParseReported(payload, Limits);
                    NoteModelChange(device, reported);
                    _store.SetModelState(device, null, JsonSerializer.Serialize(reported, Protocol.Json.CompactJsonContext.Default.ReportedState));
                    return IngestOutcome.Stored;
                case "status":
                    var status = DeviceMessageParser.ParseStatus(payload, Limits);
                    var seen = _time.GetUtcNow();
                    _store.SetPresence(device, status.State, status.Boot, seen);
                    After(() => PresenceStored?.Invoke(device, status.State, seen));
                    return IngestOutcome.Stored;
                default:
                    return IngestOutcome.Stored; // command replies: passed on to whoever asked
            }
        }
        catch (WireFormatException e)
        {
            Reject(device, subtopic, e.Reason, e.Message);
            return IngestOutcome.Dropped; // acknowledged and dropped: re-sending a malformed payload would not help
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The store failed on a well-formed message: not acknowledged, the device sends it again.
            Interlocked.Increment(ref _storeErrors);
            LogStoreFailed(_logger, 1, e.Message);
            return IngestOutcome.Retry;
        }
    }

    private void Reject(string device, string subtopic, string reason, string detail)
    {
        Interlocked.Increment(ref _malformed);
        _byReason.AddOrUpdate(reason, 1, (_, n) => n + 1);
        var counters = Counters(device);
        counters.Add(reason);
        // Logged once per device per minute: a device sending garbage in a loop must not flood the log.
        if (counters.ShouldLog(_time.GetTimestamp(), _time)) LogMalformed(_logger, device, subtopic, reason, detail, counters.Total);
    }

    private DeviceCounters Counters(string device) => _perDevice.GetOrAdd(device, static _ => new DeviceCounters());

    private async Task WriteLoopAsync()
    {
        var group = new List<Pending>();
        while (await _queue.Reader.WaitToReadAsync().ConfigureAwait(false))
        {
            group.Clear();
            var records = 0;
            while (records < MaxRecordsPerCommit && _queue.Reader.TryRead(out var p))
            {
                group.Add(p);
                records += p.Records.Count;
            }

            try
            {
                Commit(group);
            }
            catch (Exception e)
            {
                // One of them may be poison: each batch alone, so the others are stored and only that one fails.
                LogGroupRetry(_logger, group.Count, e.Message);
                foreach (var p in group)
                {
                    try
                    {
                        Commit([p]);
                    }
                    catch (Exception alone)
                    {
                        Fail(p, alone);
                    }
                }
            }
        }
    }

    private void Commit(List<Pending> group)
    {
        var now = _time.GetUtcNow();
        var records = group.Sum(p => p.Records.Count);
        var started = _time.GetTimestamp();
        var fresh = _store.StoreBatches(group.Select(p => (p.Device, (IReadOnlyList<IncomingRecord>)p.Records)).ToList(), now);
        CommitTimed?.Invoke(_time.GetElapsedTime(started).TotalSeconds);
        Interlocked.Add(ref _stored, fresh);
        Interlocked.Add(ref _duplicates, records - fresh);
        Interlocked.Increment(ref _commits);
        var nowMs = now.ToUnixTimeMilliseconds();
        foreach (var p in group)
        {
            foreach (var r in p.Records)
            {
                // A record whose time is flagged implausible says nothing about latency (a clock in 1970 or 2100).
                if (r.At >= Year2020Ms && r.At <= nowMs + 86_400_000) _e2e.Add(nowMs - r.At);
            }

            p.Done.TrySetResult(true);
        }

        if (RecordsStored is { } onStored)
        {
            foreach (var p in group)
            {
                if (p.Records.Any(r => r.Class is "health" or "alert")) After(() => onStored(p.Device, p.Records));
            }
        }

        var drifted = group.Where(p => p.Records.Any(r => r.Class == "drift")).Select(p => p.Device).Distinct().ToList();
        if (drifted.Count > 0 && DriftStored is { } onDrift)
        {
            // Off the writer: it reads and merges windows. Its failures are its own (logged there), never the writer's.
            _ = Task.Run(() =>
            {
                try
                {
                    onDrift(drifted);
                }
                catch (Exception e)
                {
                    LogDriftCheckFailed(_logger, e.Message);
                }
            });
        }
    }

    /// <summary>Runs what follows a store (alerts, live events): its failure is logged and never undoes or retries the store.</summary>
    private void After(Action what)
    {
        try
        {
            what();
        }
        catch (Exception e)
        {
            LogAfterStoreFailed(_logger, e.Message);
        }
    }

    /// <summary>A batch that failed on its own: not acknowledged when the store cannot write (retry helps), else quarantined.</summary>
    private void Fail(Pending p, Exception e)
    {
        if (e is IOException or TimeoutException or UnauthorizedAccessException || e.InnerException is IOException)
        {
            Interlocked.Increment(ref _storeErrors);
            LogStoreFailed(_logger, 1, e.Message);
            p.Done.TrySetResult(false);
            return;
        }

        var reason = $"{e.GetType().Name}: {e.Message}";
        Interlocked.Increment(ref _quarantined);
        Counters(p.Device).Add("quarantined");
        try
        {
            _store.Quarantine(new QuarantinedBatch(0, p.Device, _time.GetUtcNow(), reason, p.Records.Count,
                JsonSerializer.Serialize(p.Records.Select(r => new QuarantinedRecord(r.Boot, r.Seq, r.Class, r.At, r.Data)).ToList(), IngestJsonContext.Default.ListQuarantinedRecord)));
        }
        catch (Exception q)
        {
            LogQuarantineFailed(_logger, p.Device, q.Message);
        }

        LogQuarantined(_logger, p.Device, p.Records.Count, reason);
        p.Done.TrySetResult(true); // acknowledged: sending it again would fail the same way
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _writer.ConfigureAwait(false);
    }

    private sealed record Pending(string Device, List<IncomingRecord> Records, long Bytes)
    {
        public TaskCompletionSource<bool> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>What one device had refused, by reason, and when it was last logged.</summary>
    private sealed class DeviceCounters
    {
        private readonly ConcurrentDictionary<string, long> _counts = new(StringComparer.Ordinal);
        private long _lastLog = long.MinValue;

        public bool Any => !_counts.IsEmpty;

        public long Total => _counts.Where(c => !c.Key.StartsWith("flag:", StringComparison.Ordinal)).Sum(c => c.Value);

        public void Add(string reason) => _counts.AddOrUpdate(reason, 1, (_, n) => n + 1);

        public Dictionary<string, long> Snapshot() => new(_counts.OrderBy(c => c.Key, StringComparer.Ordinal));

        public bool ShouldLog(long now, TimeProvider time)
        {
            var last = Interlocked.Read(ref _lastLog);
            if (last != long.MinValue && time.GetElapsedTime(last, now) < TimeSpan.FromMinutes(1)) return false;
            return Interlocked.CompareExchange(ref _lastLog, now, last) == last;
        }
    }

    [LoggerMessage(EventId = 2100, Level = LogLevel.Warning, Message = "Malformed payload from device {Device} on {Topic} dropped ({Reason}): {Error} ({Total} refused from this device so far; logged once a minute)")]
    private static partial void LogMalformed(ILogger logger, string device, string topic, string reason, string error, long total);

    [LoggerMessage(EventId = 2101, Level = LogLevel.Error, Message = "Storing {Batches} batches failed; not acknowledged, so sent again (by the device; with an external broker by the broker once the hub reconnects): {Error}")]
    private static partial void LogStoreFailed(ILogger logger, int batches, string error);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Warning, Message = "A group commit of {Batches} batches failed ({Error}); storing them one by one")]
    private static partial void LogGroupRetry(ILogger logger, int batches, string error);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Error, Message = "A batch of {Records} records from device {Device} cannot be stored and is quarantined (GET /api/ingest/quarantine): {Reason}")]
    private static partial void LogQuarantined(ILogger logger, string device, int records, string reason);

    [LoggerMessage(EventId = 2104, Level = LogLevel.Error, Message = "Could not keep the quarantined batch of device {Device}: {Error}")]
    private static partial void LogQuarantineFailed(ILogger logger, string device, string error);

    [LoggerMessage(EventId = 2106, Level = LogLevel.Error, Message = "Alerts or live events after a store failed (the data is stored): {Error}")]
    private static partial void LogAfterStoreFailed(ILogger logger, string error);

    [LoggerMessage(EventId = 2105, Level = LogLevel.Error, Message = "Drift check after ingest failed: {Error}")]
    private static partial void LogDriftCheckFailed(ILogger logger, string error);
}

/// <summary>What became of a device's message.</summary>
public enum IngestOutcome
{
    /// <summary>Stored (or acted on): acknowledge, and let the broker retain or forward it.</summary>
    Stored,

    /// <summary>Malformed and dropped (counted): acknowledge, but neither retain nor forward it.</summary>
    Dropped,

    /// <summary>Well-formed but not stored (the store failed): do not acknowledge; the device sends it again.</summary>
    Retry,
}

/// <summary>One record of a quarantined batch, as the device sent it.</summary>
public sealed record QuarantinedRecord(string Boot, long Seq, string Class, long At, string Data);

[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase)]
[System.Text.Json.Serialization.JsonSerializable(typeof(List<QuarantinedRecord>))]
internal sealed partial class IngestJsonContext : System.Text.Json.Serialization.JsonSerializerContext;

/// <summary>
/// What ingest did so far; <c>e2e</c> is from a record's production on the device to its commit here, over the last
/// records stored. <see cref="ByReason"/>: malformed records by reason, all devices; <see cref="Devices"/>: per device,
/// what was refused (by reason; <c>refused:…</c> by the broker, <c>quarantined</c>) and flagged (<c>flag:implausible-time</c>:
/// stored, but produced before 2020 or more than a day ahead of the hub's clock).
/// </summary>
public sealed record IngestStats(
    long Malformed, long Refused, long Stored, long Duplicates, long Commits, double E2eP50Ms, double E2eP99Ms, int E2eSamples,
    long Quarantined, long StoreErrors, long ImplausibleTime, IReadOnlyDictionary<string, long> ByReason,
    IReadOnlyDictionary<string, Dictionary<string, long>> Devices);

/// <summary>The last N latencies in a ring; percentiles on demand (a copy and a sort: for the API, not per record).</summary>
internal sealed class LatencyWindow(int capacity)
{
    private readonly long[] _ring = new long[capacity];
    private long _count;

    public void Add(long ms)
    {
        var i = Interlocked.Increment(ref _count) - 1;
        _ring[i % _ring.Length] = ms;
    }

    public (double P50, double P99, int N) Percentiles()
    {
        var n = (int)Math.Min(Interlocked.Read(ref _count), _ring.Length);
        if (n == 0) return (0, 0, 0);
        var copy = _ring.AsSpan(0, n).ToArray();
        Array.Sort(copy);
        return (copy[(int)(0.50 * (n - 1))], copy[(int)(0.99 * (n - 1))], n);
    }
}
