using System.Threading.Channels;
using EdgeMl.Agent.Hosting;
using EdgeMl.Agent.Sensors;
using Microsoft.Extensions.Logging;

namespace EdgeMl.Agent.Pipeline;

/// <summary>
/// sensor → sliding window → normalization → model → prediction → sinks, as three stages joined by
/// bounded channels. The sampler never waits for inference: when the window queue is full it drops
/// the window and counts it. Window and prediction buffers circulate through free lists, so the
/// steady state allocates nothing.
/// A stage never dies alone: a fault it does not handle (a sensor bug, the model failing on 20 windows in a row, a
/// sink failing on 20 predictions in a row) stops all three stages and <see cref="RunAsync"/> throws
/// <see cref="AgentStoppedException"/> naming the stage, so no stage is left waiting on a full channel.
/// </summary>
public sealed partial class AgentPipeline
{
    private readonly ISensorSource _source;
    private readonly Predictor _predictor;
    private readonly PipelineSettings _settings;
    private readonly AgentHealth _health;
    private readonly IReadOnlyList<IPredictionSink> _sinks;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly SlidingWindow[] _windows;
    private readonly Channel<Frame> _ready;
    private readonly Channel<Frame> _freeFrames;
    private readonly Channel<Prediction> _results;
    private readonly Channel<Prediction> _freePredictions;
    private readonly int[] _sinkFailures;

    /// <summary>Sees every sensor sample (drift sketches of the inputs); called on the sensor loop, so it must be cheap.</summary>
    public ISampleSink? Samples { get; set; }

    /// <summary>A candidate model run on the same windows as the active one (an update's shadow period); set and cleared at any time.</summary>
    /// <remarks>Setting waits for a shadow run in progress, so the one replaced may be disposed right after.</remarks>
    public IShadow? Shadow
    {
        get { lock (_shadowGate) return _shadow; }
        set { lock (_shadowGate) _shadow = value; }
    }

    private readonly Lock _shadowGate = new();
    private volatile IShadow? _shadow;

    /// <summary>Raised on the inference thread when the model fails on a window (the window is skipped).</summary>
    public event Action<Exception>? InferenceFailed;

    /// <summary>Raised once, after the first predictions came out of the model (the model runs healthily).</summary>
    public event Action? Healthy;

    /// <summary>Raised when the sensor starts failing (first error after good reads) and when it answers again.</summary>
    public event Action<SensorStateChange>? SensorStateChanged;

    public AgentPipeline(
        ISensorSource source, Predictor predictor, PipelineSettings settings, AgentHealth health,
        IReadOnlyList<IPredictionSink> sinks, TimeProvider time, ILogger logger)
    {
        _source = source;
        _predictor = predictor;
        _settings = settings;
        _health = health;
        _sinks = sinks;
        _sinkFailures = new int[sinks.Count];
        _time = time;
        _logger = logger;

        var manifest = predictor.Runner.Manifest;
        _windows = manifest.Inputs.Select((input, i) =>
        {
            var src = input.Source!;
            var index = src.Channels.Select(ch =>
            {
                var k = IndexOf(source.Channels, ch);
                return k >= 0 ? k : throw new ConfigurationException("Agent:Sensor",
                    $"model input '{input.Name}' needs channel '{ch}' but sensor {source.Name} has channels {string.Join(", ", source.Channels)}");
            }).ToArray();
            if (source is IRecordedSource recording)
            {
                // A recording's rate and length are known now: refuse what would be silently wrong (another rate) or
                // give nothing (shorter than a window) before starting.
                if (Math.Abs(recording.RecordedRateHz - src.SampleRateHz) > 1e-6 * src.SampleRateHz)
                {
                    throw new ConfigurationException("Agent:Sensor",
                        $"'{recording.Recording}' is recorded at {recording.RecordedRateHz} Hz but model input '{input.Name}' expects {src.SampleRateHz} Hz (resample it: sox IN.wav -r {src.SampleRateHz} OUT.wav)");
                }

                if (recording.Frames < src.Window)
                {
                    throw new ConfigurationException("Agent:Sensor",
                        $"'{recording.Recording}' holds {recording.Frames} samples ({Sensors.Replay.WavReplaySensor.Seconds(recording.Frames, recording.RecordedRateHz)} s), fewer than one window of model input '{input.Name}' ({src.Window} samples)");
                }
            }

            var first = manifest.Inputs[0].Source!;
            if (src.Window != first.Window || src.Hop != first.Hop)
            {
                throw new ConfigurationException("Agent:Model", $"inputs[{i}]: every input must share window and hop (inputs[0] has {first.Window}/{first.Hop})");
            }

            return new SlidingWindow(index, src.Window, src.Hop);
        }).ToArray();

        var depth = Math.Max(1, settings.WindowQueue);
        _ready = Channel.CreateBounded<Frame>(new BoundedChannelOptions(depth) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
        _freeFrames = Channel.CreateUnbounded<Frame>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = false });
        for (var i = 0; i < depth + 1; i++)
        {
            _freeFrames.Writer.TryWrite(new Frame(_windows.Select(w => new float[w.Length * w.Channels]).ToArray()));
        }

        _results = Channel.CreateBounded<Prediction>(new BoundedChannelOptions(depth) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
        _freePredictions = Channel.CreateUnbounded<Prediction>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        for (var i = 0; i < depth + 1; i++)
        {
            _freePredictions.Writer.TryWrite(new Prediction(manifest));
        }

        health.SetSensor(source.Name);
        health.SetModel(manifest.Name, manifest.Version, predictor.Runner.Provider);
    }

    /// <summary>Runs until <see cref="PipelineSettings.Count"/> predictions, the end of a replay, or cancellation.</summary>
    /// <exception cref="AgentStoppedException">A stage failed beyond what it handles; the other stages were stopped.</exception>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        AgentStoppedException? failure = null;

        // Each stage runs guarded: its fault is kept (the first one wins) and stops the others.
        Task Stage(string name, Func<Task> body) => Task.Run(async () =>
        {
            try
            {
                await body().ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException || !stop.IsCancellationRequested)
            {
                Interlocked.CompareExchange(ref failure, new AgentStoppedException(name, e), null);
                await stop.CancelAsync().ConfigureAwait(false);
            }
        }, CancellationToken.None);

        var stages = new (string Name, Task Task)[]
        {
            ("sensor", Stage("sensor", () => SampleAsync(stop.Token))),
            ("inference", Stage("inference", () => InferAsync(stop.Token))),
            ("sinks", Stage("sinks", () => EmitAsync(stop))),
        };
        var all = Task.WhenAll(stages.Select(s => s.Task));
        try
        {
            await all.WaitAsync(stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Stopping. A stage that does not end within StopTimeout — a sensor read blocked in a driver or on an idle
            // FIFO cannot be cancelled — is left behind, so that the agent still stops (delivers, says offline, exits 0)
            // instead of hanging until a supervisor kills it.
            if (await Task.WhenAny(all, Task.Delay(StopTimeout, _time, CancellationToken.None)).ConfigureAwait(false) != all)
            {
                LogStageLeftBehind(_logger, string.Join(", ", stages.Where(s => !s.Task.IsCompleted).Select(s => s.Name)), StopTimeout.TotalSeconds);
            }
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
        }

        if (failure is not null) throw failure;
    }

    private async Task SampleAsync(CancellationToken ct)
    {
        var sample = new float[_source.Channels.Count];
        var pace = _settings.Realtime || !_source.IsVirtual;
        var period = TimeSpan.FromSeconds(1.0 / _source.SampleRateHz);
        var started = _time.GetTimestamp();
        long n = 0;
        var failures = 0;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                bool more;
                try
                {
                    more = _source.Read(sample);
                }
                catch (SensorMisconfiguredException e)
                {
                    // Another chip than configured: said once, in health as misconfigured, and not retried.
                    _health.SensorMisconfigured(e.Message);
                    SensorStateChanged?.Invoke(new SensorStateChange(_source.Name, "misconfigured", e.Message, _time.GetUtcNow()));
                    throw;
                }
                catch (Exception e) when (e is IOException or InvalidDataException or TimeoutException)
                {
                    failures++;
                    if (failures == 1) SensorStateChanged?.Invoke(new SensorStateChange(_source.Name, "failing", e.Message, _time.GetUtcNow()));
                    var wait = TimeSpan.FromMilliseconds(Math.Min(_settings.RetryMaxMs, _settings.RetryInitialMs * Math.Pow(2, Math.Min(failures - 1, 20))));
                    _health.SensorError(e.Message, wait);
                    LogSensorError(_logger, _source.Name, failures, wait.TotalMilliseconds, e.Message);
                    await Task.Delay(wait, _time, ct).ConfigureAwait(false);
                    // Time lost while the sensor was down is not made up; pacing restarts from now.
                    started = _time.GetTimestamp();
                    n = 0;
                    continue;
                }

                if (!more)
                {
                    _health.SensorEnded();
                    break;
                }

                if (failures > 0)
                {
                    LogSensorRecovered(_logger, _source.Name, failures);
                    SensorStateChanged?.Invoke(new SensorStateChange(_source.Name, "ok", null, _time.GetUtcNow()));
                    failures = 0;
                }

                _health.SensorSample();
                Samples?.OnSample(sample);
                n++;
                var due = false;
                foreach (var w in _windows)
                {
                    due |= w.Add(sample);
                }

                if (due)
                {
                    if (pace)
                    {
                        Dispatch(n / _source.SampleRateHz);
                    }
                    else
                    {
                        // An unpaced virtual source can wait for inference instead of dropping windows.
                        _health.WindowCut();
                        var frame = await _freeFrames.Reader.ReadAsync(ct).ConfigureAwait(false);
                        Fill(frame, n / _source.SampleRateHz);
                        await _ready.Writer.WriteAsync(frame, ct).ConfigureAwait(false);
                    }
                }

                if (pace)
                {
                    var ahead = period * n - _time.GetElapsedTime(started);
                    if (ahead > TimeSpan.FromMilliseconds(2))
                    {
                        await Task.Delay(ahead, _time, ct).ConfigureAwait(false);
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            _ready.Writer.TryComplete();
        }
    }

    private void Dispatch(double endSeconds)
    {
        _health.WindowCut();
        if (!_freeFrames.Reader.TryRead(out var frame))
        {
            _health.WindowDropped();
            return;
        }

        Fill(frame, endSeconds);
        if (!_ready.Writer.TryWrite(frame))
        {
            _health.WindowDropped();
            _freeFrames.Writer.TryWrite(frame);
        }
    }

    private void Fill(Frame frame, double endSeconds)
    {
        for (var i = 0; i < _windows.Length; i++)
        {
            _windows[i].CopyTo(frame.Windows[i]);
        }

        frame.EndSeconds = endSeconds;
    }

    private const int MaxConsecutiveFailures = 20;
    private const int HealthyAfter = 5;

    private async Task InferAsync(CancellationToken ct)
    {
        long seq = 0;
        var failures = 0;
        try
        {
            await foreach (var frame in _ready.Reader.ReadAllAsync(ct).ConfigureAwait(false))
            {
                var prediction = await _freePredictions.Reader.ReadAsync(ct).ConfigureAwait(false);
                try
                {
                    _predictor.Predict(frame.Windows, prediction);
                    failures = 0;
                }
                catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
                {
                    // A model that fails on a window: counted and reported, the window skipped. Many in a row stop the
                    // agent (a crash the slot store counts, so a bad update is rolled back).
                    _health.InferenceFailed(e.Message);
                    InferenceFailed?.Invoke(e);
                    LogInferenceFailed(_logger, ++failures, e.Message);
                    _freeFrames.Writer.TryWrite(frame);
                    _freePredictions.Writer.TryWrite(prediction);
                    if (failures >= MaxConsecutiveFailures) throw new InvalidOperationException($"the model failed on {failures} windows in a row: {e.Message}", e);
                    continue;
                }

                prediction.Sequence = ++seq;
                prediction.WindowEndSeconds = frame.EndSeconds;
                if (_shadow is not null)
                {
                    // Under the lock only while a shadow is attached: no lock per inference otherwise.
                    lock (_shadowGate) _shadow?.Run(frame.Windows, prediction);
                }
                _freeFrames.Writer.TryWrite(frame);
                _health.Predicted(prediction.LatencyMs);
                if (seq == HealthyAfter) Healthy?.Invoke();
                await _results.Writer.WriteAsync(prediction, ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            _results.Writer.TryComplete();
        }
    }

    private async Task EmitAsync(CancellationTokenSource stop)
    {
        long emitted = 0;
        try
        {
            await foreach (var prediction in _results.Reader.ReadAllAsync(stop.Token).ConfigureAwait(false))
            {
                for (var i = 0; i < _sinks.Count; i++)
                {
                    Deliver(i, prediction);
                }

                _freePredictions.Writer.TryWrite(prediction);
                if (_settings.Count > 0 && ++emitted >= _settings.Count)
                {
                    await stop.CancelAsync().ConfigureAwait(false);
                    return;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// One sink's turn. A sink that throws is counted in health and skipped for this prediction (the others still get
    /// it: a relay that cannot switch must not stop storing); one that fails on <see cref="MaxConsecutiveFailures"/>
    /// predictions in a row stops the agent.
    /// </summary>
    private void Deliver(int i, Prediction prediction)
    {
        var sink = _sinks[i];
        try
        {
            sink.OnPrediction(prediction);
            _sinkFailures[i] = 0;
        }
        catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
        {
            var failures = ++_sinkFailures[i];
            _health.SinkFailed(sink.Name, e.Message);
            if (failures == 1 || failures == MaxConsecutiveFailures) LogSinkFailed(_logger, sink.Name, failures, e.Message);
            if (failures >= MaxConsecutiveFailures)
            {
                throw new InvalidOperationException($"the {sink.Name} sink failed on {failures} predictions in a row: {e.Message}", e);
            }
        }
    }

    private static int IndexOf(IReadOnlyList<string> list, string item)
    {
        for (var i = 0; i < list.Count; i++)
        {
            if (string.Equals(list[i], item, StringComparison.OrdinalIgnoreCase)) return i;
        }

        return -1;
    }

    private sealed class Frame(float[][] windows)
    {
        public float[][] Windows { get; } = windows;
        public double EndSeconds { get; set; }
    }

    [LoggerMessage(EventId = 1200, Level = LogLevel.Warning, Message = "Sensor {Sensor} failed ({Failures} in a row), retrying in {RetryMs} ms: {Error}")]
    private static partial void LogSensorError(ILogger logger, string sensor, int failures, double retryMs, string error);

    [LoggerMessage(EventId = 1202, Level = LogLevel.Warning, Message = "Inference failed ({Failures} in a row), window skipped: {Error}")]
    private static partial void LogInferenceFailed(ILogger logger, int failures, string error);

    [LoggerMessage(EventId = 1203, Level = LogLevel.Warning, Message = "The {Sink} sink failed ({Failures} in a row), prediction skipped there: {Error}")]
    private static partial void LogSinkFailed(ILogger logger, string sink, int failures, string error);

    [LoggerMessage(EventId = 1204, Level = LogLevel.Warning, Message = "Stopping without the {Stages} stage: it did not end within {Seconds} s of the stop (a sensor read that does not return)")]
    private static partial void LogStageLeftBehind(ILogger logger, string stages, double seconds);

    /// <summary>How long a stop waits for a stage to end before leaving it behind (a blocked sensor read cannot be cancelled).</summary>
    public static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(3);

    [LoggerMessage(EventId = 1201, Level = LogLevel.Information, Message = "Sensor {Sensor} answers again after {Failures} failed reads")]
    private static partial void LogSensorRecovered(ILogger logger, string sensor, int failures);
}

/// <summary>The sensor went from answering to failing (<see cref="State"/> <c>failing</c>) or back (<c>ok</c>).</summary>
public readonly record struct SensorStateChange(string Sensor, string State, string? Error, DateTimeOffset At);

/// <summary>A second model run on the windows the active one ran on (see <c>Updates.ShadowRun</c>).</summary>
public interface IShadow
{
    void Run(ReadOnlySpan<float[]> windows, Prediction active);
}

/// <summary>Receives every raw sample, channel values in the sensor's order.</summary>
public interface ISampleSink
{
    void OnSample(ReadOnlySpan<float> sample);
}
