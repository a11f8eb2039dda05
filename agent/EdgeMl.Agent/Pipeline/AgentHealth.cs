using EdgeMl.Protocol.Health;

namespace EdgeMl.Agent.Pipeline;

/// <summary>
/// Live counters of the running pipeline, written by its stages and read as a <see cref="HealthReport"/>.
/// Latencies go into a fixed ring (the last 1,024 predictions) so percentiles cost no allocation per call.
/// </summary>
public sealed class AgentHealth(TimeProvider time)
{
    private readonly Lock _gate = new();
    private readonly long _started = time.GetTimestamp();
    private readonly double[] _latencies = new double[1024];
    private readonly SensorHealth _sensor = new();
    private long _latencyCount;
    private long _predictions;
    private long _dropped;
    private ModelHealth? _model;

    public void SetModel(string name, string version, string provider)
    {
        lock (_gate) _model = new ModelHealth { Name = name, Version = version, Provider = provider };
    }

    public void SetSensor(string name)
    {
        lock (_gate) _sensor.Name = name;
    }

    public void SensorSample()
    {
        lock (_gate)
        {
            _sensor.Samples++;
            if (_sensor.ConsecutiveErrors != 0 || _sensor.State != "ok")
            {
                _sensor.ConsecutiveErrors = 0;
                _sensor.State = "ok";
                _sensor.RetryInSeconds = null;
            }
        }
    }

    public void SensorError(string message, TimeSpan retryIn)
    {
        lock (_gate)
        {
            _sensor.Errors++;
            _sensor.ConsecutiveErrors++;
            _sensor.State = "failing";
            _sensor.LastError = message;
            _sensor.LastErrorAt = time.GetUtcNow();
            _sensor.RetryInSeconds = retryIn.TotalSeconds;
        }
    }

    /// <summary>The sensor is another chip than configured (see <c>SensorMisconfiguredException</c>): not retried.</summary>
    public void SensorMisconfigured(string message)
    {
        lock (_gate)
        {
            _sensor.Errors++;
            _sensor.State = "misconfigured";
            _sensor.LastError = message;
            _sensor.LastErrorAt = time.GetUtcNow();
            _sensor.RetryInSeconds = null;
        }
    }

    public void SensorEnded()
    {
        lock (_gate) _sensor.State = "ended";
    }

    private long _inferenceErrors;
    private string? _lastInferenceError;

    public void InferenceFailed(string message)
    {
        lock (_gate)
        {
            _inferenceErrors++;
            _lastInferenceError = message;
        }
    }

    public long InferenceErrors => Interlocked.Read(ref _inferenceErrors);

    private readonly Dictionary<string, SinkHealth> _sinks = [];

    /// <summary>A prediction sink threw on one prediction (<see cref="HealthReport.Sinks"/>).</summary>
    public void SinkFailed(string sink, string message)
    {
        lock (_gate)
        {
            var h = Sink(sink);
            h.Errors++;
            h.LastError = message;
            h.LastErrorAt = time.GetUtcNow();
        }
    }

    /// <summary>A sink dropped a prediction because its disk is full (<paramref name="message"/>), or (null) writes again.</summary>
    public void SinkDiskFull(string sink, string? message)
    {
        lock (_gate)
        {
            var h = Sink(sink);
            h.DiskFull = message is not null;
            if (message is null) return;
            h.DroppedDiskFull++;
            h.LastError = message;
            h.LastErrorAt = time.GetUtcNow();
        }
    }

    private SinkHealth Sink(string name)
    {
        if (!_sinks.TryGetValue(name, out var h)) _sinks[name] = h = new SinkHealth { Name = name };
        return h;
    }

    /// <summary>p99 latency (ms) of the last 1,024 predictions.</summary>
    public double LatencyP99Ms()
    {
        lock (_gate)
        {
            var n = (int)Math.Min(_latencyCount, _latencies.Length);
            var sorted = _latencies.AsSpan(0, n).ToArray();
            Array.Sort(sorted);
            return Percentile(sorted, 0.99);
        }
    }

    public void WindowDropped() => Interlocked.Increment(ref _dropped);

    /// <summary>
    /// The counters that show the pipeline moving (<see cref="PipelineProgress"/>): sensor reads that ended (a sample or a
    /// handled error), windows cut (<see cref="WindowCut"/>), and inferences that ended (a prediction or a handled error). Read without
    /// allocating.
    /// </summary>
    public ProgressCounters Progress()
    {
        lock (_gate)
        {
            return new ProgressCounters(_sensor.Samples + _sensor.Errors, Interlocked.Read(ref _windows), _predictions + _inferenceErrors);
        }
    }

    /// <summary>A full window was cut from the sensor stream (it goes to inference, or is dropped when inference lags).</summary>
    public void WindowCut() => Interlocked.Increment(ref _windows);

    private long _windows;

    /// <summary>Windows cut so far (<see cref="WindowCut"/>).</summary>
    public long Windows => Interlocked.Read(ref _windows);

    /// <summary>Windows dropped so far because inference was behind.</summary>
    public long WindowsDropped => Interlocked.Read(ref _dropped);

    /// <summary>Sensor samples read so far, and read errors.</summary>
    public (long Samples, long Errors) SensorCounts()
    {
        lock (_gate) return (_sensor.Samples, _sensor.Errors);
    }

    /// <summary>
    /// Where each inference's latency also goes (seconds), when the agent serves metrics (<c>Agent:Metrics:Port</c>);
    /// null (the default): nowhere, and nothing is spent on it.
    /// </summary>
    public Metrics.LatencyHistogram? LatencyHistogram { get; set; }

    public void Predicted(double latencyMs)
    {
        lock (_gate)
        {
            _predictions++;
            _latencies[_latencyCount++ % _latencies.Length] = latencyMs;
        }

        LatencyHistogram?.Record(latencyMs / 1000);
    }

    public long Predictions => Interlocked.Read(ref _predictions);

    public HealthReport Snapshot()
    {
        lock (_gate)
        {
            var uptime = time.GetElapsedTime(_started).TotalSeconds;
            var report = new HealthReport { At = time.GetUtcNow(), UptimeSeconds = uptime };
            report.Sensors.Add(new SensorHealth
            {
                Name = _sensor.Name,
                State = _sensor.State,
                Samples = _sensor.Samples,
                Errors = _sensor.Errors,
                ConsecutiveErrors = _sensor.ConsecutiveErrors,
                LastError = _sensor.LastError,
                LastErrorAt = _sensor.LastErrorAt,
                RetryInSeconds = _sensor.RetryInSeconds,
            });
            foreach (var s in _sinks.Values)
            {
                report.Sinks.Add(new SinkHealth
                {
                    Name = s.Name, Errors = s.Errors, DiskFull = s.DiskFull, DroppedDiskFull = s.DroppedDiskFull, LastError = s.LastError, LastErrorAt = s.LastErrorAt,
                });
            }

            if (_model is not null)
            {
                var n = (int)Math.Min(_latencyCount, _latencies.Length);
                var sorted = _latencies.AsSpan(0, n).ToArray();
                Array.Sort(sorted);
                report.Model = new ModelHealth
                {
                    Name = _model.Name,
                    Version = _model.Version,
                    Provider = _model.Provider,
                    Predictions = _predictions,
                    WindowsDropped = Interlocked.Read(ref _dropped),
                    InferenceErrors = _inferenceErrors,
                    LastInferenceError = _lastInferenceError,
                    InferencesPerSecond = uptime > 0 ? _predictions / uptime : 0,
                    LatencyP50Ms = Percentile(sorted, 0.50),
                    LatencyP99Ms = Percentile(sorted, 0.99),
                };
            }

            return report;
        }
    }

    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];
}

/// <summary>A moment's pipeline counters (<see cref="AgentHealth.Progress"/>): each only ever grows.</summary>
public readonly record struct ProgressCounters(long SensorReads, long WindowsDue, long Inferences);
