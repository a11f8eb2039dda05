using System.Diagnostics.Metrics;
using EdgeMl.Agent.Hosting;
using EdgeMl.Agent.Outbox;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace EdgeMl.Agent.Metrics;

/// <summary>
/// The agent's metrics (meter <see cref="MeterName"/>) served in Prometheus text format on <c>Agent:Metrics:Port</c> by
/// OpenTelemetry's stand-alone HttpListener exporter behind <see cref="MetricsFront"/>, which alone answers (only
/// <c>GET</c>/<c>HEAD /metrics</c>; docs/metrics.md lists every series). Built only when a port is
/// set: an agent without one has no listener, no meter and no per-inference cost. The counters are the numbers the
/// pipeline, outbox, uplink and drift monitor keep for the health report, observed at scrape time; only inference
/// latency is recorded as it happens (a histogram). A model switch builds a new runtime: what the old one counted is
/// carried over, so the counters only grow for as long as the process runs (the outbox's own counters are kept in
/// its file and survive restarts).
/// </summary>
public sealed class AgentMetrics : IDisposable
{
    /// <summary>The <see cref="Meter"/> name of the agent's instruments.</summary>
    public const string MeterName = "EdgeMl.Agent";

    /// <summary>Inference latency buckets (seconds): a small int8 model runs in ~0.1 ms on a Pi 4, an image model in tens of ms.</summary>
    private static readonly double[] LatencyBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

    /// <summary>Series one instrument may have (the SDK folds more into one overflow series).</summary>
    private const int MaxSeriesPerInstrument = 32;

    private readonly Meter _meter = new(MeterName);
    private readonly MeterProvider _provider;
    private readonly MetricsFront _front;
    private readonly Histogram<double> _latency;
    private readonly Lock _gate = new();
    private AgentRuntime? _runtime;
    private RuntimeCounts _finished;

    /// <summary>Starts the endpoint on <paramref name="settings"/>' address and port.</summary>
    /// <exception cref="System.Net.HttpListenerException">The port cannot be listened on (in use, not allowed).</exception>
    public AgentMetrics(MetricsSettings settings)
    {
        var host = settings.Address == "*" ? "+" : settings.Address.Contains(':', StringComparison.Ordinal) ? $"[{settings.Address}]" : settings.Address;
        var exporterPath = MetricsFront.ExporterPath();
        _latency = _meter.CreateHistogram("edgeml.agent.inference.duration", "s", "Time one inference took (the model's run, not windowing)",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });

        Counter("edgeml.agent.sensor.samples", "{sample}", "Sensor samples read", c => c.Samples);
        Counter("edgeml.agent.sensor.errors", "{error}", "Sensor read errors (each retried with backoff)", c => c.SensorErrors);
        Counter("edgeml.agent.windows", "{window}", "Windows cut from the sensor stream", c => c.Windows);
        Counter("edgeml.agent.windows.dropped", "{window}", "Windows dropped because inference was behind", c => c.WindowsDropped);
        Counter("edgeml.agent.predictions", "{prediction}", "Predictions made", c => c.Predictions);
        Counter("edgeml.agent.inference.errors", "{error}", "Inferences that failed (the window is skipped)", c => c.InferenceErrors);
        Counter("edgeml.agent.uplink.records.sent", "{record}", "Records published to the hub (a batch re-sent after a lost connection counts again)", c => c.Sent);
        Counter("edgeml.agent.uplink.records.acked", "{record}", "Records the hub's broker acknowledged (stored at the hub)", c => c.Acked);
        Counter("edgeml.agent.drift.windows", "{window}", "Drift windows (sketches of inputs and outputs) written to the outbox", c => c.DriftWindows);
        _meter.CreateObservableCounter("edgeml.agent.drift.alarms", () => Alarms(), "{alarm}",
            "Drift alarms of the on-device change detector (Page-Hinkley on the model's output), by direction of the change");

        _meter.CreateObservableGauge("edgeml.agent.uplink.connected", () => Current()?.Uplink is { } u ? [new Measurement<int>(u.Connected ? 1 : 0)] : Array.Empty<Measurement<int>>(),
            null, "1 while the MQTT connection to the hub is up, 0 while it is not (absent without a hub)");
        _meter.CreateObservableGauge("edgeml.agent.model.info", () => ModelInfo(), null,
            "The model running now (always 1; its name, version and execution provider are the labels)");
        _meter.CreateObservableGauge("edgeml.agent.outbox.records", () => OutboxDepth(), "{record}", "Records in the outbox waiting for the hub, by class");
        _meter.CreateObservableGauge("edgeml.agent.outbox.size", () => Outbox(s => s.Bytes), "By", "Bytes of records in the outbox");
        _meter.CreateObservableGauge("edgeml.agent.outbox.limit", () => Outbox(s => s.MaxBytes), "By", "The outbox's budget (Agent:Outbox:MaxBytes)");
        _meter.CreateObservableCounter("edgeml.agent.outbox.records.stored", () => Outbox(_ => Current()!.Outbox!.LastId), "{record}",
            "Records appended to the outbox since its file was created (its last record id)");
        _meter.CreateObservableCounter("edgeml.agent.outbox.records.dropped", () => OutboxDropped(), "{record}",
            "Records the outbox dropped, by class and reason: budget (full: the least important first), expired (Agent:Outbox:TtlHours), disk-full, too-large (bigger than the broker takes)");

        _provider = Sdk.CreateMeterProviderBuilder()
            .ConfigureResource(r => r.AddService("edgeml-agent", serviceVersion: typeof(AgentMetrics).Assembly.GetName().Version?.ToString(3)))
            .AddMeter(MeterName)
            // Room for the series there are (at most 16 per instrument: outbox classes × drop reasons) instead of the SDK's
            // 2,000 points reserved per instrument up front, which cost several MB of RSS on a device for nothing.
            .AddView(_ => new MetricStreamConfiguration { CardinalityLimit = MaxSeriesPerInstrument })
            .AddPrometheusHttpListener(o =>
            {
                o.Host = host;
                o.Port = settings.Port;
                o.ScrapeEndpointPath = exporterPath; // behind MetricsFront, which alone answers GET /metrics
                o.ScopeInfoEnabled = false;
                o.ScrapeResponseCacheDurationMilliseconds = 0; // a scrape shows what was counted until now
            })
            .Build();
        try
        {
            _front = new MetricsFront(host, settings.Address == "*" ? "127.0.0.1" : host, settings.Port, exporterPath);
        }
        catch
        {
            _provider.Dispose();
            _meter.Dispose();
            throw;
        }
    }

    /// <summary>The runtime whose numbers the endpoint shows from now on (the agent builds one per model it runs).</summary>
    public void Attach(AgentRuntime runtime)
    {
        runtime.Health.LatencyHistogram = _latency;
        lock (_gate) _runtime = runtime;
    }

    /// <summary>The runtime ended: what it counted is kept, so that the counters do not go back with the next one.</summary>
    public void Detach(AgentRuntime runtime)
    {
        lock (_gate)
        {
            if (_runtime != runtime) return;
            _finished += RuntimeCounts.Of(runtime);
            _runtime = null;
        }
    }

    private AgentRuntime? Current()
    {
        lock (_gate) return _runtime;
    }

    private void Counter(string name, string unit, string description, Func<RuntimeCounts, long> value) =>
        _meter.CreateObservableCounter(name, () =>
        {
            lock (_gate) return value(_runtime is null ? _finished : _finished + RuntimeCounts.Of(_runtime));
        }, unit, description);

    private IEnumerable<Measurement<long>> Alarms()
    {
        RuntimeCounts c;
        lock (_gate) c = _runtime is null ? _finished : _finished + RuntimeCounts.Of(_runtime);
        return [new Measurement<long>(c.AlarmsUp, new KeyValuePair<string, object?>("direction", "up")), new Measurement<long>(c.AlarmsDown, new KeyValuePair<string, object?>("direction", "down"))];
    }

    private IEnumerable<Measurement<int>> ModelInfo()
    {
        var runtime = Current();
        if (runtime is null) return [];
        return
        [
            new Measurement<int>(1, new KeyValuePair<string, object?>("model", runtime.ModelName), new KeyValuePair<string, object?>("version", runtime.ModelVersion),
                new KeyValuePair<string, object?>("provider", runtime.Runner.Provider)),
        ];
    }

    private IEnumerable<Measurement<long>> Outbox(Func<OutboxStats, long> value)
    {
        var outbox = Current()?.Outbox;
        if (outbox is null) return [];
        try
        {
            return [new Measurement<long>(value(outbox.Stats()))];
        }
        catch (ObjectDisposedException)
        {
            return []; // the runtime is being replaced: the next scrape sees the next one
        }
    }

    private IEnumerable<Measurement<long>> OutboxDepth()
    {
        var outbox = Current()?.Outbox;
        if (outbox is null) return [];
        try
        {
            return outbox.Stats().Depth.Select(d => new Measurement<long>(d.Value, new KeyValuePair<string, object?>("class", DeviceOutbox.Name(d.Key)))).ToList();
        }
        catch (ObjectDisposedException)
        {
            return [];
        }
    }

    private IEnumerable<Measurement<long>> OutboxDropped()
    {
        var outbox = Current()?.Outbox;
        if (outbox is null) return [];
        try
        {
            var h = outbox.Health();
            var list = new List<Measurement<long>>();
            foreach (var (cls, dropped) in h.Dropped)
            {
                var full = h.DroppedDiskFull.GetValueOrDefault(cls);
                var large = h.DroppedTooLarge.GetValueOrDefault(cls);
                Add(cls, "budget", Math.Max(0, dropped - full - large));
                Add(cls, "disk-full", full);
                Add(cls, "too-large", large);
                Add(cls, "expired", h.Expired.GetValueOrDefault(cls));
            }

            return list;

            void Add(string cls, string reason, long n) =>
                list.Add(new Measurement<long>(n, new KeyValuePair<string, object?>("class", cls), new KeyValuePair<string, object?>("reason", reason)));
        }
        catch (ObjectDisposedException)
        {
            return [];
        }
    }

    public void Dispose()
    {
        _front.Dispose();
        _provider.Dispose();
        _meter.Dispose();
    }

    /// <summary>What one runtime counted (per process, unlike the outbox's own counters).</summary>
    private readonly record struct RuntimeCounts(
        long Samples, long SensorErrors, long Windows, long WindowsDropped, long Predictions, long InferenceErrors, long Sent, long Acked,
        long DriftWindows, long AlarmsUp, long AlarmsDown)
    {
        public static RuntimeCounts Of(AgentRuntime r)
        {
            var (samples, errors) = r.Health.SensorCounts();
            var (up, down) = r.Drift?.Alarms ?? (0, 0);
            return new RuntimeCounts(samples, errors, r.Health.Windows, r.Health.WindowsDropped, r.Health.Predictions, r.Health.InferenceErrors,
                r.Uplink?.Sent ?? 0, r.Uplink?.Delivered ?? 0, r.Drift?.Reports ?? 0, up, down);
        }

        public static RuntimeCounts operator +(RuntimeCounts a, RuntimeCounts b) => new(
            a.Samples + b.Samples, a.SensorErrors + b.SensorErrors, a.Windows + b.Windows, a.WindowsDropped + b.WindowsDropped, a.Predictions + b.Predictions,
            a.InferenceErrors + b.InferenceErrors, a.Sent + b.Sent, a.Acked + b.Acked, a.DriftWindows + b.DriftWindows, a.AlarmsUp + b.AlarmsUp, a.AlarmsDown + b.AlarmsDown);
    }
}
