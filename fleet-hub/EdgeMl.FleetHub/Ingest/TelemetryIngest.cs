using System.Buffers;
using System.Text.Json;
using System.Threading.Channels;
using EdgeMl.FleetHub.Store;
using EdgeMl.Protocol.Wire;
using Microsoft.Extensions.Logging;

namespace EdgeMl.FleetHub.Ingest;

/// <summary>
/// Takes what devices publish under <c>edgeml/{device}/…</c>: batches on <c>tele</c> and <c>health</c> are stored
/// (de-duplicated) before the broker acknowledges them; <c>status</c> sets presence. A malformed payload is
/// counted, logged with the device id and dropped; it affects no other device.
/// <para>
/// Group commit: payloads are parsed on the publishing connection's own thread, then one writer stores
/// whatever batches are waiting — from many devices — in one transaction, and every waiting publisher is
/// answered when that transaction is committed. One device's batches stay in their order.
/// </para>
/// </summary>
public sealed partial class TelemetryIngest : IAsyncDisposable
{
    private const int MaxRecordsPerCommit = 50_000;

    private readonly IHubStore _store;

    /// <summary>Called (on the writer) with the devices whose drift windows were just stored.</summary>
    public Action<IReadOnlyList<string>>? DriftStored { get; set; }
    private readonly TimeProvider _time;
    private readonly ILogger<TelemetryIngest> _logger;
    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _writer;
    private readonly LatencyWindow _e2e = new(1 << 17);
    private long _malformed;
    private long _refused;
    private long _stored;
    private long _duplicates;
    private long _commits;

    public TelemetryIngest(IHubStore store, TimeProvider time, ILogger<TelemetryIngest> logger)
    {
        _store = store;
        _time = time;
        _logger = logger;
        _writer = Task.Factory.StartNew(WriteLoopAsync, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
    }

    public long Malformed => Interlocked.Read(ref _malformed);

    /// <summary>Publishes refused by the broker's ACL (a device writing outside its own topics).</summary>
    public long Refused => Interlocked.Read(ref _refused);

    public void CountRefused() => Interlocked.Increment(ref _refused);

    public IngestStats Stats()
    {
        var (p50, p99, n) = _e2e.Percentiles();
        return new IngestStats(Malformed, Refused, Interlocked.Read(ref _stored), Interlocked.Read(ref _duplicates), Interlocked.Read(ref _commits), p50, p99, n);
    }

    /// <summary>Which devices ran which model when: a change of the device's active model goes into the audit trail.</summary>
    private void NoteModelChange(string device, Protocol.Packages.ReportedState reported)
    {
        string? before = null;
        if (_store.FindDevice(device)?.ReportedJson is { } json)
        {
            try
            {
                before = JsonSerializer.Deserialize(json, Protocol.Json.ProtocolJsonContext.Default.ReportedState)?.Active;
            }
            catch (JsonException)
            {
            }
        }

        if (reported.Active is null || reported.Active == before) return;
        var why = reported.Phase == "rolled-back" ? $" (rolled back from {reported.Name}@{reported.Version}: {reported.Reason})" : "";
        _store.AddAudit(new Store.AuditEntry(reported.At, device, "device.model", $"model {reported.Active}", $"{before ?? "unknown"} → {reported.Active}{why}", device));
    }

    /// <summary>Completes with false when the message must not be acknowledged (it could not be stored).</summary>
    public async Task<bool> HandleAsync(string topic, ReadOnlySequence<byte> payload)
    {
        var parts = topic.Split('/');
        if (parts.Length < 3 || parts[0] != Topics.Root) return true;
        var device = parts[1];
        try
        {
            switch (parts[2])
            {
                case "tele" or "health" or "drift" when parts.Length == 3:
                    var pending = new Pending(device, Parse(device, payload));
                    if (pending.Records.Count == 0) return true;
                    await _queue.Writer.WriteAsync(pending).ConfigureAwait(false);
                    return await pending.Done.Task.ConfigureAwait(false);
                case "state" when parts.Length == 4 && parts[3] == "reported":
                    var reader = new Utf8JsonReader(payload);
                    var reported = JsonSerializer.Deserialize(ref reader, Protocol.Json.ProtocolJsonContext.Default.ReportedState)
                                   ?? throw new FormatException("empty reported state");
                    NoteModelChange(device, reported);
                    _store.SetModelState(device, null, JsonSerializer.Serialize(reported, Protocol.Json.ProtocolJsonContext.Default.ReportedState));
                    return true;
                case "status" when parts.Length == 3:
                    using (var doc = JsonDocument.Parse(payload))
                    {
                        var state = doc.RootElement.GetProperty("state").GetString() ?? "unknown";
                        var boot = doc.RootElement.TryGetProperty("boot", out var b) ? b.GetString() : null;
                        _store.SetPresence(device, state, boot, _time.GetUtcNow());
                    }

                    return true;
                default:
                    return true;
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            Interlocked.Increment(ref _malformed);
            LogMalformed(_logger, device, topic, e.Message);
            return true; // acknowledged and dropped: re-sending a malformed payload would not help
        }
    }

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
                var now = _time.GetUtcNow();
                var fresh = _store.StoreBatches(group.Select(p => (p.Device, (IReadOnlyList<IncomingRecord>)p.Records)).ToList(), now);
                Interlocked.Add(ref _stored, fresh);
                Interlocked.Add(ref _duplicates, records - fresh);
                Interlocked.Increment(ref _commits);
                var nowMs = now.ToUnixTimeMilliseconds();
                foreach (var p in group)
                {
                    foreach (var r in p.Records) _e2e.Add(nowMs - r.At);
                    p.Done.TrySetResult(true);
                }

                var drifted = group.Where(p => p.Records.Any(r => r.Class == "drift")).Select(p => p.Device).Distinct().ToList();
                if (drifted.Count > 0 && DriftStored is { } onDrift) _ = Task.Run(() => onDrift(drifted)); // off the writer: it reads and merges windows
            }
            catch (Exception e) when (e is LiteDB.LiteException or IOException)
            {
                LogStoreFailed(_logger, group.Count, e.Message);
                foreach (var p in group) p.Done.TrySetResult(false);
            }
        }
    }

    private static List<IncomingRecord> Parse(string device, ReadOnlySequence<byte> payload)
    {
        using var doc = JsonDocument.Parse(payload);
        var root = doc.RootElement;
        if (root.GetProperty("device").GetString() != device)
        {
            throw new FormatException($"batch names device '{root.GetProperty("device").GetString()}' but came on device {device}'s topic");
        }

        var list = new List<IncomingRecord>();
        foreach (var r in root.GetProperty("records").EnumerateArray())
        {
            list.Add(new IncomingRecord(
                r.GetProperty("boot").GetString() ?? throw new FormatException("record without boot"),
                r.GetProperty("seq").GetInt64(),
                r.GetProperty("class").GetString() ?? throw new FormatException("record without class"),
                r.GetProperty("at").GetInt64(),
                r.GetProperty("data").GetRawText()));
        }

        return list;
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _writer.ConfigureAwait(false);
    }

    private sealed record Pending(string Device, List<IncomingRecord> Records)
    {
        public TaskCompletionSource<bool> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    [LoggerMessage(EventId = 2100, Level = LogLevel.Warning, Message = "Malformed payload from device {Device} on {Topic} dropped: {Error}")]
    private static partial void LogMalformed(ILogger logger, string device, string topic, string error);

    [LoggerMessage(EventId = 2101, Level = LogLevel.Error, Message = "Storing {Batches} batches failed; not acknowledged, devices will send them again: {Error}")]
    private static partial void LogStoreFailed(ILogger logger, int batches, string error);
}

/// <summary>What ingest did so far; <c>e2e</c> is from a record's production on the device to its commit here, over the last records stored.</summary>
public sealed record IngestStats(long Malformed, long Refused, long Stored, long Duplicates, long Commits, double E2eP50Ms, double E2eP99Ms, int E2eSamples);

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
