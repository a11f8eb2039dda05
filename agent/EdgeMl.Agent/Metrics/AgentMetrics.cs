using System.Globalization;
using System.Text;
using EdgeMl.Agent.Hosting;
using EdgeMl.Agent.Outbox;

namespace EdgeMl.Agent.Metrics;

/// <summary>
/// The agent's metrics, served in the Prometheus text exposition format (version 0.0.4,
/// https://prometheus.io/docs/instrumenting/exposition_formats/) on <c>Agent:Metrics:Port</c> by
/// <see cref="MetricsFront"/> (only <c>GET</c>/<c>HEAD /metrics</c>; docs/metrics.md lists every series). Built only when
/// a port is set: an agent without one has no listener and no per-inference cost. The counters are the numbers the
/// pipeline, outbox, uplink and drift monitor keep for the health report, read at scrape time; only inference latency
/// is recorded as it happens (<see cref="LatencyHistogram"/>). A model switch builds a new runtime: what the old one
/// counted is carried over, so the counters only grow for as long as the process runs (the outbox's own counters are
/// kept in its file and survive restarts).
/// Written here rather than with OpenTelemetry's exporter (which the hub uses): the SDK and its listener made the
/// native agent 1.45 MiB bigger, which its 15 MiB budget (<c>binary_mb</c>) could not hold with the next change; the
/// format is small, and the tests parse every scrape strictly and lint it with promtool.
/// </summary>
public sealed class AgentMetrics : IDisposable
{
    /// <summary>Inference latency buckets (seconds): a small int8 model runs in ~0.1 ms on a Pi 4, an image model in tens of ms.</summary>
    private static readonly double[] LatencyBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

    private readonly MetricsFront _front;
    private readonly LatencyHistogram _latency = new(LatencyBuckets);
    private readonly Lock _gate = new();
    private AgentRuntime? _runtime;
    private RuntimeCounts _finished;

    /// <summary>Starts the endpoint on <paramref name="settings"/>' address and port.</summary>
    /// <exception cref="System.Net.HttpListenerException">The port cannot be listened on (in use, not allowed).</exception>
    public AgentMetrics(MetricsSettings settings)
    {
        _front = new MetricsFront(PrefixHost(settings.Address), settings.Port, Render);
    }

    /// <summary>
    /// The host of the listener's prefix for <c>Agent:Metrics:Address</c>: every interface (<c>+</c>) for <c>*</c>,
    /// <c>0.0.0.0</c> or <c>::</c>, else the IPv4 address itself. HttpListener's prefixes take no other IPv6 address here.
    /// </summary>
    /// <exception cref="InvalidOperationException">The address is none of these (named, with what is accepted).</exception>
    private static string PrefixHost(string address) => address switch
    {
        "*" or "0.0.0.0" or "::" or "[::]" => "+",
        _ when System.Net.IPAddress.TryParse(address, out var ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork => ip.ToString(),
        _ => throw new InvalidOperationException($"Agent:Metrics:Address '{address}' is not an IPv4 address, 0.0.0.0, :: or * (every interface)"),
    };

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

    /// <summary>One scrape: every series as it stands now, in the text exposition format.</summary>
    internal string Render()
    {
        AgentRuntime? runtime;
        RuntimeCounts c;
        lock (_gate)
        {
            runtime = _runtime;
            c = runtime is null ? _finished : _finished + RuntimeCounts.Of(runtime);
        }

        var w = new Exposition();
        w.Counter("edgeml_agent_sensor_samples_total", "Sensor samples read", c.Samples);
        w.Counter("edgeml_agent_sensor_errors_total", "Sensor read errors (each retried with backoff)", c.SensorErrors);
        w.Counter("edgeml_agent_windows_total", "Windows cut from the sensor stream", c.Windows);
        w.Counter("edgeml_agent_windows_dropped_total", "Windows dropped because inference was behind", c.WindowsDropped);
        w.Counter("edgeml_agent_predictions_total", "Predictions made", c.Predictions);
        w.Counter("edgeml_agent_inference_errors_total", "Inferences that failed (the window is skipped)", c.InferenceErrors);
        w.Counter("edgeml_agent_uplink_records_sent_total", "Records published to the hub (a batch re-sent after a lost connection counts again)", c.Sent);
        w.Counter("edgeml_agent_uplink_records_acked_total", "Records the hub's broker acknowledged (stored at the hub)", c.Acked);
        w.Counter("edgeml_agent_drift_windows_total", "Drift windows (sketches of inputs and outputs) written to the outbox", c.DriftWindows);
        w.Family("edgeml_agent_drift_alarms_total", "counter",
            "Drift alarms of the on-device change detector (Page-Hinkley on the model's output), by direction of the change");
        w.Sample("edgeml_agent_drift_alarms_total", c.AlarmsUp, "direction", "up");
        w.Sample("edgeml_agent_drift_alarms_total", c.AlarmsDown, "direction", "down");
        w.Histogram("edgeml_agent_inference_duration_seconds", "Time one inference took (the model's run, not windowing)", _latency);

        if (runtime?.Uplink is { } uplink)
        {
            w.Family("edgeml_agent_uplink_connected", "gauge", "1 while the MQTT connection to the hub is up, 0 while it is not (absent without a hub)");
            w.Sample("edgeml_agent_uplink_connected", uplink.Connected ? 1 : 0);
        }

        if (runtime is not null)
        {
            w.Family("edgeml_agent_model_info", "gauge", "The model running now (always 1; its name, version and execution provider are the labels)");
            w.Sample("edgeml_agent_model_info", 1, "model", runtime.ModelName, "version", runtime.ModelVersion, "provider", runtime.Runner.Provider);
        }

        if (runtime?.Outbox is { } outbox)
        {
            try
            {
                Outbox(w, outbox);
            }
            catch (ObjectDisposedException)
            {
                // the runtime is being replaced: the next scrape sees the next one
            }
        }

        return w.ToString();
    }

    private static void Outbox(Exposition w, DeviceOutbox outbox)
    {
        var stats = outbox.Stats();
        var health = outbox.Health();
        w.Family("edgeml_agent_outbox_records", "gauge", "Records in the outbox waiting for the hub, by class");
        foreach (var (cls, depth) in stats.Depth)
        {
            w.Sample("edgeml_agent_outbox_records", depth, "class", DeviceOutbox.Name(cls));
        }

        w.Family("edgeml_agent_outbox_size_bytes", "gauge", "Bytes of records in the outbox");
        w.Sample("edgeml_agent_outbox_size_bytes", stats.Bytes);
        w.Family("edgeml_agent_outbox_limit_bytes", "gauge", "The outbox's budget (Agent:Outbox:MaxBytes)");
        w.Sample("edgeml_agent_outbox_limit_bytes", stats.MaxBytes);
        w.Counter("edgeml_agent_outbox_records_stored_total", "Records appended to the outbox since its file was created (its last record id)", outbox.LastId);
        w.Family("edgeml_agent_outbox_records_dropped_total", "counter",
            "Records the outbox dropped, by class and reason: budget (full: the least important first), expired (Agent:Outbox:TtlHours), disk-full, too-large (bigger than the broker takes)");
        foreach (var (cls, dropped) in health.Dropped)
        {
            var full = health.DroppedDiskFull.GetValueOrDefault(cls);
            var large = health.DroppedTooLarge.GetValueOrDefault(cls);
            w.Sample("edgeml_agent_outbox_records_dropped_total", Math.Max(0, dropped - full - large), "class", cls, "reason", "budget");
            w.Sample("edgeml_agent_outbox_records_dropped_total", full, "class", cls, "reason", "disk-full");
            w.Sample("edgeml_agent_outbox_records_dropped_total", large, "class", cls, "reason", "too-large");
            w.Sample("edgeml_agent_outbox_records_dropped_total", health.Expired.GetValueOrDefault(cls), "class", cls, "reason", "expired");
        }
    }

    public void Dispose() => _front.Dispose();

    /// <summary>
    /// Writes the text exposition format 0.0.4: a <c># HELP</c> and a <c># TYPE</c> line per metric family, then its
    /// samples, label values escaped (backslash, double quote, line feed) and numbers in Go's float notation
    /// (<c>+Inf</c>, invariant culture).
    /// </summary>
    private sealed class Exposition
    {
        private readonly StringBuilder _text = new(4096);

        public void Family(string name, string type, string help) =>
            _text.Append("# HELP ").Append(name).Append(' ').Append(help.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal))
                .Append("\n# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

        public void Counter(string name, string help, long value)
        {
            Family(name, "counter", help);
            Sample(name, value);
        }

        public void Sample(string name, double value, params ReadOnlySpan<string> labels)
        {
            _text.Append(name);
            if (labels.Length > 0)
            {
                _text.Append('{');
                for (var i = 0; i + 1 < labels.Length; i += 2)
                {
                    if (i > 0) _text.Append(',');
                    _text.Append(labels[i]).Append("=\"")
                        .Append(labels[i + 1].Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal))
                        .Append('"');
                }

                _text.Append('}');
            }

            _text.Append(' ').Append(Number(value)).Append('\n');
        }

        public void Histogram(string name, string help, LatencyHistogram histogram)
        {
            Family(name, "histogram", help);
            var (bounds, cumulative, sum) = histogram.Read();
            for (var i = 0; i < bounds.Length; i++)
            {
                Sample(name + "_bucket", cumulative[i], "le", Number(bounds[i]));
            }

            Sample(name + "_bucket", cumulative[^1], "le", "+Inf");
            Sample(name + "_sum", sum);
            Sample(name + "_count", cumulative[^1]);
        }

        private static string Number(double v) =>
            double.IsPositiveInfinity(v) ? "+Inf" : double.IsNegativeInfinity(v) ? "-Inf" : double.IsNaN(v) ? "NaN" : v.ToString("R", CultureInfo.InvariantCulture);

        public override string ToString() => _text.ToString();
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
