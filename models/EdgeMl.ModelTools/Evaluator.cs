using System.Diagnostics;
using EdgeMl.ModelTools.Data;
using Microsoft.ML.OnnxRuntime;

namespace EdgeMl.ModelTools;

public sealed class EvaluateOptions
{
    public int Limit { get; set; } = 2000;
    public int Threads { get; set; } = 1;
    /// <summary>Timed runs per sample and model, interleaved (after a warm-up).</summary>
    public int Repeats { get; set; } = 1;
    public Protocol.Packages.ModelManifest? Manifest { get; set; }
    /// <summary>Class indices (.npy, one per sample) for the task metric (accuracy).</summary>
    public string? Labels { get; set; }
}

public sealed class Evaluation
{
    public int Samples { get; set; }
    public long ReferenceBytes { get; set; }
    public long CandidateBytes { get; set; }
    public double SizeRatio { get; set; }
    public double ReferenceMedianMs { get; set; }
    public double CandidateMedianMs { get; set; }
    public double LatencyRatio { get; set; }
    public List<OutputAgreement> Outputs { get; set; } = [];
    public double? ReferenceAccuracy { get; set; }
    public double? CandidateAccuracy { get; set; }
    /// <summary>Reference accuracy − candidate accuracy, in percentage points.</summary>
    public double? MetricDropPoints { get; set; }
}

public sealed class OutputAgreement
{
    public string Name { get; set; } = "";
    /// <summary>Share of samples with the same top-1 class (outputs with one row of several classes), else null.</summary>
    public double? Top1Agreement { get; set; }
    public double MaxAbsError { get; set; }
    public double MeanAbsError { get; set; }
    /// <summary>Mean over samples of the cosine similarity of the two output vectors.</summary>
    public double Cosine { get; set; }
}

/// <summary>
/// <c>edgeml model evaluate</c>: a candidate (usually the int8 model) against its reference (fp32) on held-out
/// data. Both sessions are in the same process with the same options; each sample runs on both, alternating which
/// goes first, and the medians of the per-run latencies are compared.
/// </summary>
public static class Evaluator
{
    public static Evaluation Evaluate(string reference, string candidate, string data, EvaluateOptions options, Action<int, int>? progress = null)
    {
        var refGraph = OnnxGraph.Load(reference);
        var candGraph = OnnxGraph.Load(candidate);
        var manifest = options.Manifest ?? Manifest(candidate) ?? Manifest(reference);
        using var refSession = Session(refGraph, options.Threads);
        using var candSession = Session(candGraph, options.Threads);
        var inputs = ModelInput.Of(refSession);
        var missing = inputs.Select(i => i.Name).Except(candSession.InputMetadata.Keys).ToList();
        if (missing.Count > 0) throw new ModelToolException($"{candidate} lacks input(s) {string.Join(", ", missing)} of {reference}");
        var outputs = refSession.OutputNames.Where(candSession.OutputNames.Contains).ToList();
        if (outputs.Count == 0) throw new ModelToolException($"{reference} and {candidate} share no output name");
        var samples = SampleSet.Load(data, inputs, manifest, options.Limit);
        if (samples.Count == 0) throw new ModelToolException($"{data}: no samples");
        float[]? labels = null;
        if (options.Labels is not null)
        {
            labels = NumPy.Load(options.Labels).Values.First().Data;
            if (labels.Length < samples.Count) throw new ModelToolException($"{options.Labels}: {labels.Length} labels for {samples.Count} samples");
        }
        else if (manifest?.Outputs.FirstOrDefault()?.Labels is { Count: > 0 } names
                 && samples.All(s => s.Source is { } f && names.Any(n => f.StartsWith(n + "-", StringComparison.Ordinal))))
        {
            // CSV recordings named LABEL-….csv (as models/vibration/test is): the class is in the file name.
            labels = samples.Select(s => (float)names.FindIndex(n => s.Source!.StartsWith(n + "-", StringComparison.Ordinal))).ToArray();
        }

        var refMs = new List<double>();
        var candMs = new List<double>();
        var stats = outputs.ToDictionary(o => o, o => new AgreementStats());
        long refCorrect = 0, candCorrect = 0;
        for (var s = 0; s < samples.Count; s++)
        {
            var sample = samples[s];
            if (s == 0)
            {
                Run(refSession, sample, outputs, out _); // warm-up
                Run(candSession, sample, outputs, out _);
            }

            float[][] r = [], c = [];
            for (var k = 0; k < options.Repeats; k++)
            {
                if ((s + k) % 2 == 0)
                {
                    r = Run(refSession, sample, outputs, out var a);
                    c = Run(candSession, sample, outputs, out var b);
                    refMs.Add(a);
                    candMs.Add(b);
                }
                else
                {
                    c = Run(candSession, sample, outputs, out var b);
                    r = Run(refSession, sample, outputs, out var a);
                    refMs.Add(a);
                    candMs.Add(b);
                }
            }

            for (var o = 0; o < outputs.Count; o++) stats[outputs[o]].Add(r[o], c[o]);
            if (labels is not null)
            {
                var truth = (int)labels[s];
                if (ArgMax(r[0]) == truth) refCorrect++;
                if (ArgMax(c[0]) == truth) candCorrect++;
            }

            progress?.Invoke(s + 1, samples.Count);
        }

        var e = new Evaluation
        {
            Samples = samples.Count,
            ReferenceBytes = refGraph.SizeBytes, // the models themselves (a package's zip compression aside)
            CandidateBytes = candGraph.SizeBytes,
            ReferenceMedianMs = Median(refMs),
            CandidateMedianMs = Median(candMs),
            Outputs = outputs.Select(o => stats[o].Result(o)).ToList(),
        };
        e.SizeRatio = Math.Round((double)e.CandidateBytes / e.ReferenceBytes, 4);
        e.LatencyRatio = Math.Round(e.CandidateMedianMs / e.ReferenceMedianMs, 3);
        if (labels is not null)
        {
            e.ReferenceAccuracy = (double)refCorrect / samples.Count;
            e.CandidateAccuracy = (double)candCorrect / samples.Count;
            e.MetricDropPoints = Math.Round(100 * (e.ReferenceAccuracy.Value - e.CandidateAccuracy.Value), 3);
        }

        return e;
    }

    private static Protocol.Packages.ModelManifest? Manifest(string path) =>
        path.EndsWith(".edgepkg", StringComparison.OrdinalIgnoreCase) ? Protocol.Packages.ModelPackage.Open(path).Manifest : null;

    private static InferenceSession Session(OnnxGraph g, int threads)
    {
        using var options = QuantizationCheck.TimedOptions(threads);
        return g.OpenSession(options);
    }

    private static float[][] Run(InferenceSession session, Sample sample, List<string> outputs, out double ms)
    {
        var names = sample.Inputs.Keys.ToArray();
        var values = sample.ToOrtValues(names);
        try
        {
            using var run = new RunOptions();
            var start = Stopwatch.GetTimestamp();
            using var results = session.Run(run, names, values, outputs);
            ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            return results.Select(QuantizationCheck.Floats).ToArray();
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    internal static int ArgMax(float[] v)
    {
        var best = 0;
        for (var i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    public static double Median(List<double> v)
    {
        if (v.Count == 0) return 0;
        var s = v.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}

/// <summary>
/// Agreement of a candidate's output with the reference's over samples: top-1, absolute errors and cosine — per sample
/// and averaged, or, for outputs of one value (a score), over the vector of all samples' values.
/// </summary>
internal sealed class AgreementStats
{
    private long _n;
    private long _top1;
    private double _max;
    private double _sumAbs;
    private long _elements;
    private double _cos;
    private double _dot, _nr, _nc;
    private bool _classifier = true;

    public void Add(float[] r, float[] c)
    {
        _n++;
        if (r.Length < 2) _classifier = false;
        if (Evaluator.ArgMax(r) == Evaluator.ArgMax(c)) _top1++;
        double dot = 0, nr = 0, nc = 0;
        for (var i = 0; i < r.Length; i++)
        {
            var d = Math.Abs(r[i] - c[i]);
            _max = Math.Max(_max, double.IsNaN(d) ? double.PositiveInfinity : d);
            _sumAbs += d;
            dot += r[i] * c[i];
            nr += r[i] * r[i];
            nc += c[i] * c[i];
        }

        _dot += dot;
        _nr += nr;
        _nc += nc;
        _elements += r.Length;
        _cos += Cosine(dot, nr, nc);
    }

    /// <summary>NaN or infinity in either counts as no agreement.</summary>
    private static double Cosine(double dot, double nr, double nc)
    {
        var cos = nr > 0 && nc > 0 ? dot / Math.Sqrt(nr * nc) : nr == nc ? 1 : 0;
        return double.IsFinite(cos) ? cos : 0;
    }

    public OutputAgreement Result(string name) => new()
    {
        Name = name,
        Top1Agreement = _classifier ? Math.Round((double)_top1 / _n, 5) : null,
        MaxAbsError = _max,
        MeanAbsError = _sumAbs / Math.Max(1, _elements),
        Cosine = Math.Round(_elements == _n ? Cosine(_dot, _nr, _nc) : _cos / Math.Max(1, _n), 6),
    };
}
