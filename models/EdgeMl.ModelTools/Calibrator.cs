using EdgeMl.ModelTools.Data;
using Microsoft.ML.OnnxRuntime;

namespace EdgeMl.ModelTools;

public enum CalibrationMethod
{
    MinMax,
    Percentile,
    Entropy,
}

/// <summary>
/// Activation ranges from calibration data: the model is run by ONNX Runtime with every tensor to be quantized
/// exposed as an output. <c>minmax</c>: the observed range; <c>percentile</c>: the range that keeps the given share
/// of |x| (outliers clipped); <c>entropy</c>: the clipping threshold whose quantized distribution is closest to the
/// observed one (KL divergence over a 2,048-bin histogram of |x|, as TensorRT calibrates).
/// </summary>
public static class Calibrator
{
    private const int Bins = 2048;

    public static Dictionary<string, (float Lo, float Hi)> Ranges(OnnxGraph graph, IReadOnlyList<string> tensors, IReadOnlyList<Sample> samples,
        CalibrationMethod method, double percentile, Action<int, int>? progress)
    {
        if (samples.Count == 0) throw new ModelToolException("no calibration samples");
        var augmented = graph.Model.Clone();
        var outputs = augmented.Graph.Output.Select(o => o.Name).ToHashSet();
        foreach (var t in tensors.Where(t => !outputs.Contains(t))) augmented.Graph.Output.Add(OnnxGraph.FloatValue(t));

        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        using (var session = OnnxGraph.OpenSession(augmented, options, $"{graph.Source} (with its activations as outputs, for calibration)"))
        {
            var min = tensors.ToDictionary(t => t, _ => float.PositiveInfinity);
            var max = tensors.ToDictionary(t => t, _ => float.NegativeInfinity);
            var total = method == CalibrationMethod.MinMax ? samples.Count : samples.Count * 2;
            var done = 0;
            foreach (var sample in samples)
            {
                Run(session, sample, tensors, graph.Source, (name, values) =>
                {
                    float lo = min[name], hi = max[name];
                    foreach (var v in values)
                    {
                        if (v < lo) lo = v;
                        if (v > hi) hi = v;
                    }

                    min[name] = lo;
                    max[name] = hi;
                });
                progress?.Invoke(++done, total);
            }

            if (method == CalibrationMethod.MinMax) return tensors.ToDictionary(t => t, t => (min[t], max[t]));

            var hist = tensors.ToDictionary(t => t, _ => new long[Bins]);
            var absMax = tensors.ToDictionary(t => t, t => Math.Max(Math.Abs(min[t]), Math.Abs(max[t])));
            foreach (var sample in samples)
            {
                Run(session, sample, tensors, graph.Source, (name, values) =>
                {
                    var h = hist[name];
                    var width = absMax[name] / Bins;
                    if (width <= 0) return;
                    foreach (var v in values) h[Math.Min(Bins - 1, (int)(Math.Abs(v) / width))]++;
                });
                progress?.Invoke(++done, total);
            }

            return tensors.ToDictionary(t => t, t =>
            {
                var width = absMax[t] / Bins;
                if (width <= 0) return (min[t], max[t]);
                var nonNegative = min[t] >= 0;
                var threshold = method == CalibrationMethod.Percentile
                    ? PercentileThreshold(hist[t], width, percentile)
                    : EntropyThreshold(hist[t], width, nonNegative ? 256 : 128);
                return (Math.Max(min[t], -threshold), Math.Min(max[t], threshold));
            });
        }
    }

    private static void Run(InferenceSession session, Sample sample, IReadOnlyList<string> tensors, string source, Action<string, ReadOnlySpan<float>> each)
    {
        var names = sample.Inputs.Keys.ToArray();
        var values = sample.ToOrtValues(names);
        try
        {
            using var run = new RunOptions();
            using var results = session.Run(run, names, values, tensors.ToArray());
            for (var i = 0; i < tensors.Count; i++)
            {
                each(tensors[i], results[i].GetTensorDataAsSpan<float>());
            }
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelToolException($"{source}: a calibration sample does not run ({string.Join(", ", names.Select(n => $"{n} {sample.Inputs[n]}"))}): {e.Message}", e);
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    private static float PercentileThreshold(long[] hist, float width, double percentile)
    {
        var total = hist.Sum();
        var keep = total * percentile / 100.0;
        long seen = 0;
        for (var i = 0; i < hist.Length; i++)
        {
            seen += hist[i];
            if (seen >= keep) return (i + 1) * width;
        }

        return hist.Length * width;
    }

    /// <summary>The threshold whose <paramref name="levels"/>-level quantization of the clipped histogram has the least KL divergence from it.</summary>
    private static float EntropyThreshold(long[] hist, float width, int levels)
    {
        var best = hist.Length;
        var bestKl = double.PositiveInfinity;
        var p = new double[hist.Length];
        var q = new double[hist.Length];
        for (var i = levels; i <= hist.Length; i += 8)
        {
            for (var k = 0; k < i; k++) p[k] = hist[k];
            for (var k = i; k < hist.Length; k++) p[i - 1] += hist[k];
            // q: the bins inside the threshold (without the clipped tail) quantized to `levels` levels, each chunk's
            // mass spread over its non-empty bins. p carries the tail in its last bin and q does not: that is the cost
            // of clipping, as the quantization error is the cost of a wide range (TensorRT's calibration).
            var chunk = (double)i / levels;
            for (var j = 0; j < levels; j++)
            {
                var start = (int)(j * chunk);
                var stop = j == levels - 1 ? i : (int)((j + 1) * chunk);
                double sum = 0;
                var nonZero = 0;
                for (var k = start; k < stop; k++)
                {
                    sum += hist[k];
                    if (hist[k] != 0) nonZero++;
                }

                for (var k = start; k < stop; k++) q[k] = hist[k] != 0 ? sum / nonZero : 0;
            }

            double ps = 0, qs = 0;
            for (var k = 0; k < i; k++) { ps += p[k]; qs += q[k]; }
            if (ps <= 0 || qs <= 0) continue;
            double kl = 0;
            for (var k = 0; k < i; k++)
            {
                if (p[k] <= 0) continue;
                var pk = p[k] / ps;
                var qk = Math.Max(q[k] / qs, 1e-12);
                kl += pk * Math.Log(pk / qk);
            }

            if (kl < bestKl)
            {
                bestKl = kl;
                best = i;
            }
        }

        return (best + 0.5f) * width;
    }
}
