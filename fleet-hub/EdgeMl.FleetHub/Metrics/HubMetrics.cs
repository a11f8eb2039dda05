using System.Diagnostics.Metrics;
using EdgeMl.FleetHub.Broker;
using EdgeMl.FleetHub.Ingest;
using EdgeMl.FleetHub.Rollouts;
using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Metrics;

/// <summary>
/// The hub's instruments, on <see cref="System.Diagnostics.Metrics"/> (meter <see cref="MeterName"/>), exported at
/// <c>GET /metrics</c> in Prometheus text format by OpenTelemetry's exporter (docs/metrics.md lists every series).
/// Ingest counters are the numbers <see cref="TelemetryIngest"/> keeps for <c>GET /api/ingest</c>, observed at scrape
/// time, not counted a second time. Fleet gauges (devices by presence and drift status, rollouts by state, store size)
/// read the store: they are sampled at most once per <see cref="HubSettings.MetricsSampleSeconds"/>, however often
/// Prometheus scrapes. No series carries a device id.
/// </summary>
public sealed partial class HubMetrics : IDisposable
{
    /// <summary>The <see cref="Meter"/> name of the hub's own instruments.</summary>
    public const string MeterName = "EdgeMl.Hub";

    /// <summary>Buckets of the commit-latency histogram (seconds): a LiteDB commit of a few records is ~1 ms, a big group or a slow disk up to seconds.</summary>
    private static readonly double[] CommitBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    /// <summary>States reported even at zero, so that a dashboard's series exist before the first device or rollout does.</summary>
    private static readonly string[] Presences = [FleetPresence.Online, FleetPresence.Offline, FleetPresence.NeverSeen];
    private static readonly string[] DriftStatuses = ["no data", "ok", "watch", "moderate", "major"];
    private static readonly string[] RolloutStates = ["running", "paused", "completed", "halted", "aborted"];

    private readonly Meter _meter = new(MeterName);
    private readonly IHubStore _store;
    private readonly IDeviceConnections _connections;
    private readonly RolloutEngine _rollouts;
    private readonly TimeProvider _time;
    private readonly TimeSpan _sampleEvery;
    private readonly ILogger<HubMetrics> _logger;
    private readonly Lock _gate = new();
    private FleetSample? _sample;

    public HubMetrics(TelemetryIngest ingest, IHubStore store, IDeviceConnections connections, RolloutEngine rollouts, HubSettings settings,
        Broker.BrokerSessionTakeovers takeovers, TimeProvider time, ILogger<HubMetrics> logger)
    {
        _store = store;
        _connections = connections;
        _rollouts = rollouts;
        _time = time;
        _logger = logger;
        _sampleEvery = TimeSpan.FromSeconds(Math.Max(0, settings.MetricsSampleSeconds));

        // Ingest: counters observed from TelemetryIngest (the same numbers as GET /api/ingest).
        _meter.CreateObservableCounter("edgeml.ingest.records.received", () => ingest.Received, "{record}",
            "Well-formed telemetry, health and drift records handed to the store (new and duplicate; a batch re-sent after a store failure counts again)");
        _meter.CreateObservableCounter("edgeml.ingest.records.stored", () => ingest.Stored, "{record}", "Records stored (new)");
        _meter.CreateObservableCounter("edgeml.ingest.records.duplicate", () => ingest.Duplicates, "{record}",
            "Records the store already had (a device re-sent them after a lost acknowledgement): acknowledged, not stored again");
        _meter.CreateObservableCounter("edgeml.ingest.records.malformed", () => ByReason(ingest.MalformedByReason), "{record}",
            "Records (or whole payloads) refused as malformed, by reason");
        _meter.CreateObservableCounter("edgeml.ingest.publishes.refused", () => ByReason(WithZeros(ingest.RefusedByReason, RefusedReasons)), "{publish}",
            "Publishes the embedded broker refused (ACL, retained, unknown topic, too large), by reason");
        _meter.CreateObservableCounter("edgeml.ingest.records.implausible_time", () => ingest.ImplausibleTime, "{record}",
            "Records stored but flagged: produced before 2020 or more than a day ahead of the hub's clock");
        _meter.CreateObservableCounter("edgeml.ingest.commits", () => ingest.Commits, "{commit}", "Group commits (one store transaction for many batches)");
        _meter.CreateObservableCounter("edgeml.ingest.batches.quarantined", () => ingest.Quarantined, "{batch}",
            "Batches that could not be stored on their own and were set aside (GET /api/ingest/quarantine)");
        _meter.CreateObservableCounter("edgeml.ingest.store_errors", () => ingest.StoreErrors, "{error}",
            "Store failures on well-formed messages (not acknowledged; devices send them again)");
        var commit = _meter.CreateHistogram("edgeml.ingest.commit.duration", "s", "Time one group commit took in the store",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = CommitBuckets });
        ingest.CommitTimed = seconds => commit.Record(seconds);

        // Replicas: broker sessions of gone replicas taken over (ExternalBrokerClient.Adoption.cs).
        _meter.CreateObservableCounter("edgeml.broker.sessions.taken_over", () => takeovers.Done, "{session}",
            "Broker sessions of replicas that are gone which this replica emptied (stored what was queued) and ended");
        _meter.CreateObservableCounter("edgeml.broker.session_takeover.failures", () => takeovers.Failed, "{failure}",
            "Tries to take over a gone replica's broker session that failed (broker or store away); each is retried");

        // Fleet: sampled from the store.
        _meter.CreateObservableGauge("edgeml.devices.connected", () => Sample().Connected, "{device}",
            "Devices connected now (embedded broker: open MQTT connections; external broker: presence online)");
        _meter.CreateObservableGauge("edgeml.devices", () => Labelled(Sample().ByPresence, "presence"), "{device}", "Registered devices (not revoked) by presence");
        _meter.CreateObservableGauge("edgeml.devices.drift", () => Labelled(Sample().ByDrift, "status"), "{device}",
            "Registered devices (not revoked) by drift status as last evaluated (no data, ok, watch, moderate, major)");
        _meter.CreateObservableGauge("edgeml.rollouts", () => Labelled(Sample().RolloutsByState, "state"), "{rollout}", "Rollouts by state");
        _meter.CreateObservableGauge("edgeml.store.size", () => Sample().StoreBytes is { } b ? [new Measurement<long>(b)] : Array.Empty<Measurement<long>>(), "By",
            "Bytes the store takes (LiteDB: its files and packages; PostgreSQL: pg_database_size)");
    }

    /// <summary>The broker's refusal reasons (<see cref="TelemetryIngest.CountRefused"/>): a fixed list, reported from 0.</summary>
    private static readonly string[] RefusedReasons = ["acl", "retained", "unknown-topic", "too-large"];

    private static Dictionary<string, long> WithZeros(IReadOnlyDictionary<string, long> counts, string[] keys)
    {
        var all = Zeros(keys);
        foreach (var (k, v) in counts) all[k] = v;
        return all;
    }

    private static IEnumerable<Measurement<long>> ByReason(IReadOnlyDictionary<string, long> counts) =>
        counts.Select(c => new Measurement<long>(c.Value, new KeyValuePair<string, object?>("reason", c.Key)));

    private static IEnumerable<Measurement<long>> Labelled(IReadOnlyDictionary<string, long> counts, string label) =>
        counts.Select(c => new Measurement<long>(c.Value, new KeyValuePair<string, object?>(label, c.Key)));

    /// <summary>The fleet as last sampled; sampled again when older than the sampling interval. Never throws (a failed sample keeps the last one).</summary>
    private FleetSample Sample()
    {
        lock (_gate)
        {
            var now = _time.GetTimestamp();
            if (_sample is not null && _time.GetElapsedTime(_sample.Taken, now) < _sampleEvery) return _sample;
            try
            {
                _sample = Take(now);
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or LiteDB.LiteException or TimeoutException or UnauthorizedAccessException)
            {
                // The store is unreachable (PostgreSQL down, a file being replaced): the last sample stands; ingest
                // counters and the store's own errors say the rest.
                LogSampleFailed(_logger, e.Message);
                _sample ??= new FleetSample(now, 0, Zeros(Presences), Zeros(DriftStatuses), Zeros(RolloutStates), null);
                _sample = _sample with { Taken = now };
            }

            return _sample;
        }
    }

    private FleetSample Take(long now)
    {
        var presence = Zeros(Presences);
        var drift = Zeros(DriftStatuses);
        foreach (var d in _store.Devices())
        {
            if (d.Enrollment == "revoked") continue;
            var state = FleetPresence.Of(d.Presence, d.LastSeen); // the fleet table's words: neverSeen until the hub hears from it
            presence[state] = presence.GetValueOrDefault(state) + 1;
            var status = d.DriftStatus ?? "no data";
            drift[status] = drift.GetValueOrDefault(status) + 1;
        }

        var rollouts = Zeros(RolloutStates);
        foreach (var r in _rollouts.All()) rollouts[r.State] = rollouts.GetValueOrDefault(r.State) + 1;
        var connected = _connections.ConnectedDevices ?? presence.GetValueOrDefault("online");
        return new FleetSample(now, connected, presence, drift, rollouts, _store.SizeBytes());
    }

    private static Dictionary<string, long> Zeros(string[] keys) => keys.ToDictionary(k => k, _ => 0L, StringComparer.Ordinal);

    public void Dispose() => _meter.Dispose();

    private sealed record FleetSample(long Taken, long Connected, Dictionary<string, long> ByPresence, Dictionary<string, long> ByDrift,
        Dictionary<string, long> RolloutsByState, long? StoreBytes);

    [LoggerMessage(EventId = 2800, Level = LogLevel.Warning, Message = "Metrics: sampling the fleet from the store failed; /metrics shows the last sample: {Error}")]
    private static partial void LogSampleFailed(ILogger logger, string error);
}
