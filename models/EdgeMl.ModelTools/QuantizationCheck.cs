using System.Diagnostics;
using EdgeMl.ModelTools.Data;
using Microsoft.ML.OnnxRuntime;
using Onnx;

namespace EdgeMl.ModelTools;

/// <summary>
/// The check every quantized model passes before it is written: it is saved to a file, loaded by ONNX Runtime from
/// that path (all optimizations, so the int8 fusions run) and run beside the float model on the same samples; the
/// mean cosine of every output and the median latencies (interleaved runs, the target's thread count) are measured.
/// </summary>
public sealed class QuantizationCheck : IDisposable
{
    private readonly OnnxGraph _reference;
    private readonly IReadOnlyList<Sample> _samples;
    private readonly int _threads;
    private readonly InferenceSession _session;
    private readonly string[] _outputs;
    private readonly List<float[][]> _expected = [];
    private readonly float[]? _labels;

    /// <summary>The outcome of one check.</summary>
    /// <param name="AccuracyDropPoints">With labels: top-1 accuracy of fp32 minus that of int8 on the check samples, in points.</param>
    public sealed record Outcome(List<OutputAgreement> Outputs, double ReferenceMs, double CandidateMs, double? AccuracyDropPoints = null)
    {
        /// <summary>int8 latency / float latency (median per sample run).</summary>
        public double LatencyRatio => ReferenceMs > 0 ? Math.Round(CandidateMs / ReferenceMs, 3) : 1;
    }

    /// <param name="reference">The float model, as read from its file.</param>
    /// <param name="samples">What both models are run on (at least one).</param>
    /// <param name="threads">Intra-op threads for the timed runs.</param>
    /// <param name="labels">Class index of each sample (for the first output's top-1 accuracy), or null.</param>
    public QuantizationCheck(OnnxGraph reference, IReadOnlyList<Sample> samples, int threads, float[]? labels = null)
    {
        if (samples.Count == 0) throw new ModelToolException($"{reference.Source}: no samples to check the quantized model on");
        if (labels is not null && labels.Length < samples.Count) throw new ModelToolException($"{labels.Length} labels for {samples.Count} check samples");
        _labels = labels;
        _reference = reference;
        _samples = samples;
        _threads = threads;
        using var options = TimedOptions(threads);
        _session = reference.OpenSession(options);
        _outputs = [.. _session.OutputNames];
        foreach (var s in samples) _expected.Add(Run(_session, s, _outputs, $"{reference.Source} (float model)"));
    }

    /// <summary>Session options for timing: all optimizations, sequential, <paramref name="threads"/> intra-op threads, no spinning on one.</summary>
    internal static SessionOptions TimedOptions(int threads)
    {
        var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = threads, InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        if (threads == 1) options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        return options;
    }

    /// <summary>Writes <paramref name="candidate"/> to <paramref name="path"/>, loads it from there and compares it with the float model.</summary>
    /// <exception cref="ModelToolException">The result does not load or run (a bug in the quantizer: says so).</exception>
    public Outcome Measure(OnnxGraph candidate, string path)
    {
        candidate.Save(path);
        using var options = TimedOptions(_threads);
        InferenceSession session;
        try
        {
            session = new InferenceSession(path, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelToolException($"the quantized {_reference.Source} does not load in ONNX Runtime (a bug in the quantizer; please report it with the model); nothing written: {e.Message}", e);
        }

        using (session)
        {
            var stats = _outputs.Select(_ => new AgreementStats()).ToArray();
            var (refCorrect, candCorrect) = (0, 0);
            for (var k = 0; k < _samples.Count; k++)
            {
                var got = Run(session, _samples[k], _outputs, $"the quantized {_reference.Source}");
                for (var o = 0; o < _outputs.Length; o++) stats[o].Add(_expected[k][o], got[o]);
                if (_labels is null) continue;
                if (Evaluator.ArgMax(_expected[k][0]) == (int)_labels[k]) refCorrect++;
                if (Evaluator.ArgMax(got[0]) == (int)_labels[k]) candCorrect++;
            }

            var (refMs, candMs) = Latency(session);
            double? drop = _labels is null ? null : Math.Round(100.0 * (refCorrect - candCorrect) / _samples.Count, 3);
            return new Outcome(_outputs.Select((o, i) => stats[i].Result(o)).ToList(), refMs, candMs, drop);
        }
    }

    /// <summary>Median latencies of float and int8, interleaved over the samples: at least 50 runs each and 0.5 s, at most 5,000.</summary>
    private (double Reference, double Candidate) Latency(InferenceSession candidate)
    {
        var r = new List<double>();
        var c = new List<double>();
        var values = _samples.Select(s => s.ToOrtValues([.. s.Inputs.Keys])).ToList();
        try
        {
            using var run = new RunOptions();
            double Time(InferenceSession session, int k)
            {
                var start = Stopwatch.GetTimestamp();
                using var _ = session.Run(run, [.. _samples[k].Inputs.Keys], values[k], _outputs);
                return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }

            for (var k = 0; k < Math.Min(3, _samples.Count); k++) { Time(_session, k); Time(candidate, k); }
            var total = Stopwatch.StartNew();
            for (var i = 0; i < 5000 && (i < 50 || total.Elapsed.TotalSeconds < 0.5); i++)
            {
                var k = i % _samples.Count;
                if (i % 2 == 0) { r.Add(Time(_session, k)); c.Add(Time(candidate, k)); }
                else { c.Add(Time(candidate, k)); r.Add(Time(_session, k)); }
            }
        }
        finally
        {
            foreach (var v in values.SelectMany(x => x)) v.Dispose();
        }

        return (Evaluator.Median(r), Evaluator.Median(c));
    }

    /// <summary>
    /// The quantized node whose own quantization loses most (cosine of its output against the float model's, compared
    /// with the cosine of its input), among <paramref name="quantized"/> outside <paramref name="excluded"/>; null when none can be told.
    /// </summary>
    public (string Node, double Cosine)? MostDamaging(OnnxGraph candidate, IReadOnlySet<string> quantized, IEnumerable<string> excluded)
    {
        var skip = excluded.ToHashSet(StringComparer.Ordinal);
        var nodes = candidate.Graph.Node.Where(n => quantized.Contains(n.Name) && !skip.Contains(n.Name) && n.Output.Count > 0).ToList();
        if (nodes.Count == 0) return null;
        var floatNames = _reference.Graph.Node.SelectMany(n => n.Output).Concat(_reference.Graph.Input.Select(i => i.Name)).ToHashSet(StringComparer.Ordinal);
        // Tensors both models have: each node's output and its first input (the dequantized input's float name).
        string Plain(string t) => t.EndsWith("_dq", StringComparison.Ordinal) ? t[..^3] : t;
        var tensors = nodes.SelectMany(n => new[] { n.Output[0], Plain(n.Input[0]) }).Where(floatNames.Contains).Distinct().ToList();
        if (tensors.Count == 0) return null;
        var fp = Expose(_reference.Model, tensors);
        var q = Expose(candidate.Model, tensors);
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        using var fs = OnnxGraph.OpenSession(fp, options, _reference.Source);
        using var qs = OnnxGraph.OpenSession(q, options, _reference.Source);
        var stats = tensors.ToDictionary(t => t, _ => new AgreementStats());
        foreach (var s in _samples.Take(8))
        {
            var a = Run(fs, s, [.. tensors], _reference.Source);
            var b = Run(qs, s, [.. tensors], _reference.Source);
            for (var i = 0; i < tensors.Count; i++) stats[tensors[i]].Add(a[i], b[i]);
        }

        double Cos(string t) => stats.TryGetValue(t, out var x) ? x.Result(t).Cosine : 1;
        var worst = nodes.Where(n => stats.ContainsKey(n.Output[0])).Select(n => (n.Name, Out: Cos(n.Output[0]), Loss: Cos(Plain(n.Input[0])) - Cos(n.Output[0])))
            .OrderByDescending(x => x.Loss).FirstOrDefault();
        return worst.Name is null ? null : (worst.Name, worst.Out);
    }

    private static ModelProto Expose(ModelProto model, IEnumerable<string> tensors)
    {
        var m = model.Clone();
        var outputs = m.Graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var t in tensors.Where(t => !outputs.Contains(t))) m.Graph.Output.Add(new ValueInfoProto { Name = t });
        return m;
    }

    private static float[][] Run(InferenceSession session, Sample sample, string[] outputs, string what)
    {
        var names = sample.Inputs.Keys.ToArray();
        var values = sample.ToOrtValues(names);
        try
        {
            using var run = new RunOptions();
            using var results = session.Run(run, names, values, outputs);
            return results.Select(Floats).ToArray();
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelToolException($"{what} does not run on a check sample ({string.Join(", ", names.Select(n => $"{n} {sample.Inputs[n]}"))}; give --calibration data for every input): {e.Message}", e);
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    /// <summary>A result as float32, whatever its numeric type.</summary>
    internal static float[] Floats(OrtValue v) => v.GetTensorTypeAndShape().ElementDataType switch
    {
        Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float => v.GetTensorDataAsSpan<float>().ToArray(),
        Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Double => v.GetTensorDataAsSpan<double>().ToArray().Select(x => (float)x).ToArray(),
        Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int64 => v.GetTensorDataAsSpan<long>().ToArray().Select(x => (float)x).ToArray(),
        Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int32 => v.GetTensorDataAsSpan<int>().ToArray().Select(x => (float)x).ToArray(),
        Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Bool => v.GetTensorDataAsSpan<bool>().ToArray().Select(x => x ? 1f : 0f).ToArray(),
        Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float16 => v.GetTensorDataAsSpan<Float16>().ToArray().Select(x => (float)x).ToArray(),
        var t => throw new ModelToolException($"an output of type {t} cannot be compared"),
    };

    public void Dispose() => _session.Dispose();
}
