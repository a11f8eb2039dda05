using System.Text.Json;
using EdgeMl.Agent.Outbox;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Protocol.Drift;
using EdgeMl.Protocol.Json;
using EdgeMl.Protocol.Packages;
using EdgeMl.Protocol.Wire;

namespace EdgeMl.Agent.Drift;

/// <summary>
/// Sketches every input feature the baseline knows (raw sensor channels) and the model's outputs (class
/// probabilities, predicted labels) over reporting windows, and stores each window as a drift record in the
/// outbox. A Page–Hinkley detector on the probability of the baseline's most common class raises an alert
/// at once on a sudden change, without waiting for the window to close.
/// </summary>
public sealed class DriftMonitor : ISampleSink, IPredictionSink, IDisposable
{
    private readonly Lock _gate = new();
    private readonly ModelManifest _manifest;
    private readonly DriftBaseline _baseline;
    private readonly DriftSettings _settings;
    private readonly TimeProvider _time;
    private readonly DeviceOutbox _outbox;
    private readonly AlertRecorder? _alerts;
    private readonly (int Channel, FeatureBaseline Baseline)[] _inputs;
    private readonly (int Class, FeatureBaseline Baseline)[] _outputs;
    private readonly PageHinkley? _detector;
    private readonly int _detectorClass = -1;
    private readonly string _detectorOutput = "";
    private readonly ITimer _timer;
    private FeatureSketch[] _inputSketches = [];
    private FeatureSketch[] _outputSketches = [];
    private Dictionary<string, long> _labels = [];
    private DateTimeOffset _from;
    private ulong _seed = 1;

    /// <param name="timerFailed">Told when closing a window on the timer fails (the timer thread must not crash the process); null rethrows.</param>
    public DriftMonitor(ModelManifest manifest, IReadOnlyList<string> channels, DriftSettings settings, TimeProvider time, DeviceOutbox outbox, AlertRecorder? alerts,
        Action<Exception>? timerFailed = null)
    {
        _manifest = manifest;
        _baseline = manifest.Baseline ?? throw new ArgumentException("the package has no drift baseline", nameof(manifest));
        _settings = settings;
        _time = time;
        _outbox = outbox;
        _alerts = alerts;
        _inputs = _baseline.Features
            .Select(f => (Channel: channels.ToList().IndexOf(f.Name), Baseline: f))
            .Where(x => x.Channel >= 0 && x.Baseline.Edges.Count >= 2).ToArray();
        var labels = manifest.Outputs.Count > 0 ? manifest.Outputs[0].Labels ?? [] : [];
        _outputs = _baseline.Outputs
            .Select(o => (Class: o.Name.StartsWith("p_", StringComparison.Ordinal) ? labels.IndexOf(o.Name[2..]) : -1, Baseline: o))
            .Where(x => x.Class >= 0 && x.Baseline.Edges.Count >= 2).ToArray();

        // The detector watches the probability of the class the reference data held most.
        var common = _baseline.Outputs.FirstOrDefault(o => o.Categories is { Count: > 0 })?.Categories!.MaxBy(kv => kv.Value).Key;
        var watched = _outputs.FirstOrDefault(o => o.Baseline.Name == $"p_{common}");
        if (watched.Baseline is not null && watched.Baseline.Variance > 0)
        {
            _detector = new PageHinkley(watched.Baseline.Mean, Math.Sqrt(watched.Baseline.Variance));
            _detectorClass = watched.Class;
            _detectorOutput = watched.Baseline.Name;
        }

        Reset();
        _timer = time.CreateTimer(_ =>
        {
            try
            {
                Flush();
            }
            catch (Exception e) when (timerFailed is not null)
            {
                timerFailed(e);
            }
        }, null, TimeSpan.FromSeconds(settings.WindowSeconds), TimeSpan.FromSeconds(settings.WindowSeconds));
    }

    public string Name => "drift";

    public int Features => _inputs.Length;

    public long Reports { get; private set; }

    private long _alarmsUp;
    private long _alarmsDown;

    /// <summary>Drift alarms of the on-device change detector (Page-Hinkley on the model's output) so far: the score went up, or down.</summary>
    public (long Up, long Down) Alarms => (Interlocked.Read(ref _alarmsUp), Interlocked.Read(ref _alarmsDown));

    public void OnSample(ReadOnlySpan<float> sample)
    {
        lock (_gate)
        {
            for (var i = 0; i < _inputs.Length; i++) _inputSketches[i].Add(sample[_inputs[i].Channel]);
        }
    }

    public void OnPrediction(Prediction p)
    {
        int alarm;
        lock (_gate)
        {
            var probs = p.Values[0];
            for (var i = 0; i < _outputs.Length; i++) _outputSketches[i].Add(probs[_outputs[i].Class]);
            if (p.Label is { } label) _labels[label] = _labels.GetValueOrDefault(label) + 1;
            alarm = _detector?.Add(probs[_detectorClass]) ?? 0;
        }

        if (alarm != 0) Interlocked.Increment(ref alarm > 0 ? ref _alarmsUp : ref _alarmsDown);
        if (alarm != 0) _alerts?.Drift("page_hinkley", _detectorOutput, alarm > 0 ? "up" : "down", p.Sequence, _time.GetUtcNow());
    }

    /// <summary>Closes the window: its sketches become a drift record (when it saw anything) and new ones start.</summary>
    public void Flush()
    {
        DriftReport report;
        lock (_gate)
        {
            var to = _time.GetUtcNow();
            if (_inputSketches.All(s => s.Moments.Count == 0) && _labels.Count == 0)
            {
                _from = to;
                return;
            }

            report = new DriftReport
            {
                Model = _manifest.Name,
                Version = _manifest.Version,
                Baseline = _baseline,
                From = _from,
                To = to,
                Features = _inputSketches.Select(s => s.ToData()).ToList(),
                Outputs = _outputSketches.Select(s => s.ToData()).ToList(),
                Labels = _labels,
            };
            Reset();
            _from = to;
        }

        _outbox.Append(RecordClass.Drift, JsonSerializer.SerializeToUtf8Bytes(report, CompactJsonContext.Default.DriftReport));
        Reports++;
    }

    private void Reset()
    {
        _inputSketches = _inputs.Select(x => FeatureSketch.For(x.Baseline, _settings.K, _seed++)).ToArray();
        _outputSketches = _outputs.Select(x => FeatureSketch.For(x.Baseline, _settings.K, _seed++)).ToArray();
        _labels = [];
        if (_from == default) _from = _time.GetUtcNow();
    }

    public void Dispose()
    {
        _timer.Dispose();
        try
        {
            Flush(); // the last, partial window
        }
        catch (ObjectDisposedException)
        {
            // The outbox went first (the runtime stopped on a fault): nothing left to store it in.
        }
    }
}
