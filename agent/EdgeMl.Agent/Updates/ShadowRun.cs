using System.Diagnostics;
using EdgeMl.Agent.Inference;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.Agent.Updates;

/// <summary>
/// The staged model run beside the active one on the same live windows (on the inference thread, right after
/// the active model, so both latencies are measured under the same conditions). Only the active model's results
/// are acted on; the candidate's are compared and counted: agreement, latency ratio, errors, output distribution.
/// </summary>
public sealed class ShadowRun : IShadow, IDisposable
{
    private const int LatencyWindow = 2048;
    private readonly Predictor _candidate;
    private readonly Prediction _result;
    private readonly Lock _gate = new();
    private readonly double[] _activeMs = new double[LatencyWindow];
    private readonly double[] _shadowMs = new double[LatencyWindow];
    private readonly Dictionary<string, long> _classes = [];
    private readonly Dictionary<string, long> _activeClasses = [];
    private readonly long _started = Stopwatch.GetTimestamp();
    private long _runs;
    private long _agree;
    private long _errors;
    private int _latencies;

    public ShadowRun(ModelRunner candidate, ModelManifest active)
    {
        var m = candidate.Manifest;
        if (m.Inputs.Count != active.Inputs.Count || m.Inputs.Zip(active.Inputs).Any(p =>
                !p.First.Shape.SequenceEqual(p.Second.Shape) || p.First.Source?.Window != p.Second.Source?.Window
                || !(p.First.Source?.Channels ?? []).SequenceEqual(p.Second.Source?.Channels ?? [], StringComparer.OrdinalIgnoreCase)))
        {
            throw new InvalidDataException($"{m.Name}@{m.Version} takes other inputs than the active {active.Name}@{active.Version}: it cannot shadow it on the same windows");
        }

        Runner = candidate;
        _candidate = new Predictor(candidate);
        _result = new Prediction(m);
    }

    public ModelRunner Runner { get; }

    /// <summary>Runs the candidate on the window the active model just ran on; never throws (a failure is counted).</summary>
    public void Run(ReadOnlySpan<float[]> windows, Prediction active)
    {
        bool agree;
        double ms;
        try
        {
            _candidate.Predict(windows, _result);
            ms = _result.LatencyMs;
            agree = Agrees(active, _result);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            lock (_gate) { _runs++; _errors++; }
            return;
        }

        lock (_gate)
        {
            _runs++;
            if (agree) _agree++;
            var i = _latencies++ % LatencyWindow;
            _activeMs[i] = active.LatencyMs;
            _shadowMs[i] = ms;
            Count(_classes, _result.Label ?? (_result.IsAnomaly ? "anomaly" : "normal"));
            Count(_activeClasses, active.Label ?? (active.IsAnomaly ? "anomaly" : "normal"));
        }
    }

    private static void Count(Dictionary<string, long> d, string key) => d[key] = d.GetValueOrDefault(key) + 1;

    /// <summary>Top class for classifiers; the anomaly decision for anomaly scores; within 5 % (relative) for other outputs.</summary>
    private static bool Agrees(Prediction a, Prediction b)
    {
        if (a.ClassIndex >= 0 || b.ClassIndex >= 0) return a.Label == b.Label;
        if (a.Primary.Kind == OutputKinds.Anomaly) return a.IsAnomaly == b.IsAnomaly;
        var x = a.Values[0];
        var y = b.Values[0];
        if (x.Length != y.Length) return false;
        for (var i = 0; i < x.Length; i++)
        {
            if (Math.Abs(x[i] - y[i]) > 0.05 * Math.Max(1e-3, Math.Abs(x[i]))) return false;
        }

        return true;
    }

    public ShadowFigures Figures(bool done)
    {
        lock (_gate)
        {
            var n = Math.Min(_latencies, LatencyWindow);
            var ap99 = P99(_activeMs, n);
            var sp99 = P99(_shadowMs, n);
            var ok = Math.Max(1, _runs - _errors);
            return new ShadowFigures
            {
                Runs = _runs,
                Agreement = _runs == 0 ? 0 : (double)_agree / Math.Max(1, _runs),
                ActiveP99Ms = Math.Round(ap99, 4),
                ShadowP99Ms = Math.Round(sp99, 4),
                LatencyRatio = ap99 > 0 ? Math.Round(sp99 / ap99, 3) : 0,
                Errors = _errors,
                ErrorRate = _runs == 0 ? 0 : (double)_errors / _runs,
                Distribution = _classes.ToDictionary(kv => kv.Key, kv => Math.Round((double)kv.Value / ok, 4)),
                ActiveDistribution = _activeClasses.ToDictionary(kv => kv.Key, kv => Math.Round((double)kv.Value / ok, 4)),
                Seconds = Math.Round(Stopwatch.GetElapsedTime(_started).TotalSeconds, 1),
                Done = done,
            };
        }
    }

    private static double P99(double[] values, int n)
    {
        if (n == 0) return 0;
        var copy = values.AsSpan(0, n).ToArray();
        Array.Sort(copy);
        return copy[Math.Min(n - 1, (int)Math.Ceiling(0.99 * n) - 1)];
    }

    public void Dispose() => Runner.Dispose();
}
