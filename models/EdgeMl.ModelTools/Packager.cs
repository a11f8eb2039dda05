using System.Globalization;
using EdgeMl.ModelTools.Data;
using EdgeMl.Protocol.Packages;
using Microsoft.ML.OnnxRuntime;

namespace EdgeMl.ModelTools;

public sealed class PackageResult
{
    public string Out { get; set; } = "";
    public ModelManifest Manifest { get; set; } = new();
    public int Windows { get; set; }
    public long Samples { get; set; }
}

/// <summary>
/// <c>edgeml model package</c>: a model and a manifest template become an <c>.edgepkg</c> — the manifest checked
/// against the model (inputs, outputs, state, types, shapes), the model's SHA-256 and size filled in, quantization
/// described, and the drift baseline computed from reference data: per input feature (sensor channel, raw values)
/// and per output (class probabilities on fixed edges, the label distribution; other outputs per value): count,
/// mean, variance, min, max, a histogram whose inner edges are the reference deciles plus an underflow and an
/// overflow bin, and quantiles.
/// </summary>
public static class Packager
{
    private static readonly double[] QuantileProbabilities = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99];

    /// <summary>Fine at both ends: a probability piles up at 0 and 1, where deciles would be a hair apart.</summary>
    public static readonly double[] ProbabilityEdges = [0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.000001];

    public static PackageResult Package(string model, string manifestPath, string? reference, string output, int limit = 100_000, Action<int, int>? progress = null)
    {
        var graph = OnnxGraph.Load(model);
        var manifest = manifestPath.EndsWith(".edgepkg", StringComparison.OrdinalIgnoreCase)
            ? ModelPackage.Open(manifestPath).Manifest
            : ModelPackage.ParseManifest(InputFiles.ReadAll(manifestPath, "manifest"), manifestPath);
        var errors = ManifestValidator.Validate(manifest);
        errors.AddRange(Compare(manifest, graph));
        if (errors.Count > 0)
        {
            throw new ModelToolException($"the manifest {manifestPath} does not match {graph.Source}:{Environment.NewLine}  - {string.Join($"{Environment.NewLine}  - ", errors)}");
        }

        var quantization = Inspector.Quantization(graph);
        if (!quantization.StartsWith("none", StringComparison.Ordinal))
        {
            manifest.Quantization ??= new QuantizationInfo();
            manifest.Quantization.Format = quantization.StartsWith("QOperator", StringComparison.Ordinal) ? "qoperator" : quantization.StartsWith("dynamic", StringComparison.Ordinal) ? "dynamic" : "qdq";
            manifest.Quantization.PerChannel = graph.Graph.Node.Any(n => n.OpType == "DequantizeLinear" && n.Attribute.Any(a => a.Name == "axis"));
            manifest.Quantization.Activations = quantization.Contains("(int8)", StringComparison.Ordinal) ? "int8" : "uint8";
            manifest.Quantization.Tool = graph.Model.ProducerName is { Length: > 0 } p ? p : manifest.Quantization.Tool;
            var meta = graph.Model.MetadataProps.ToDictionary(e => e.Key, e => e.Value);
            if (meta.TryGetValue("edgeml.calibration", out var cal)) manifest.Quantization.Calibration = cal;
            if (meta.TryGetValue("edgeml.reference_sha256", out var refSha)) manifest.Quantization.ReferenceModelSha256 = refSha;
        }
        else
        {
            manifest.Quantization = null;
        }

        var result = new PackageResult { Out = output, Manifest = manifest };
        if (reference is not null) manifest.Baseline = Baseline(graph, manifest, reference, limit, progress, result);
        ModelPackage.Write(output, manifest, graph.ToBytes());
        return result;
    }

    /// <summary>The manifest against the model's real inputs and outputs (the agent's rules: <see cref="ModelInterfaceCheck"/>).</summary>
    public static List<string> Compare(ModelManifest m, OnnxGraph g) =>
        ModelInterfaceCheck.Compare(m, g.RealInputs().ToDictionary(v => v.Name, Tensor), g.Graph.Output.ToDictionary(v => v.Name, Tensor));

    private static ModelTensor Tensor(Onnx.ValueInfoProto v) =>
        v.Type?.TensorType is { } t
            ? new ModelTensor(true, OnnxGraph.ElementType(t.ElemType), OnnxGraph.Shape(v), t.Shape?.Dim.Select(d => d.DimParam ?? "").ToArray() ?? [])
            : new ModelTensor(false, v.Type?.ValueCase.ToString().ToLowerInvariant() ?? "unknown", [], []);

    private static DriftBaseline Baseline(OnnxGraph g, ModelManifest m, string reference, int limit, Action<int, int>? progress, PackageResult result)
    {
        var inputs = g.RealInputs().Select(ModelInput.Of).ToList();
        var samples = SampleSet.Load(reference, inputs, m, limit);
        if (samples.Count == 0) throw new ModelToolException($"{reference}: no reference windows");
        result.Windows = samples.Count;

        // Input features: each sensor channel's raw values (what the device sketches), from the CSV rows when the
        // reference is CSV, else recovered from the tensors (normalization undone).
        var features = new List<FeatureBaseline>();
        var spec = m.Inputs.FirstOrDefault(i => i.Source is not null);
        if (spec is not null)
        {
            var channels = spec.Source!.Channels;
            var raw = reference.EndsWith(".csv", StringComparison.OrdinalIgnoreCase) || Directory.Exists(reference)
                ? CsvChannels(reference, channels)
                : TensorChannels(samples, spec);
            result.Samples = raw[0].Count;
            features.AddRange(channels.Select((ch, c) => Feature(ch, raw[c], null)));
        }
        else
        {
            foreach (var input in m.Inputs)
            {
                var values = samples.SelectMany(s => s.Inputs[input.Name].Floats().Select(v => (double)v)).ToList();
                features.Add(Feature(input.Name, values, null));
                result.Samples = values.Count;
            }
        }

        // Outputs: the model's own on the reference windows.
        var outputs = new List<FeatureBaseline>();
        using (var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR })
        using (var session = g.OpenSession(options))
        {
            var perOutput = m.Outputs.Select(_ => new List<float[]>()).ToList();
            // State and constants as the agent feeds them: from the manifest, in their own element types.
            var state = m.State.ToDictionary(s => s.Input, s => SampleTensor.Of(s.Type, s.Initial, s.Shape.Select(d => Math.Max(1, d)).ToArray(), $"manifest state '{s.Input}'"));
            var constants = m.Constants.Select(c => (c.Name, Tensor: SampleTensor.Of(c.Type, c.Values, [.. c.Shape], $"manifest constant '{c.Name}'"))).ToList();
            for (var k = 0; k < samples.Count; k++)
            {
                var s = samples[k];
                foreach (var st in m.State) s.Inputs[st.Input] = state[st.Input];
                foreach (var (name, tensor) in constants) s.Inputs[name] = tensor;
                var names = s.Inputs.Keys.ToArray();
                var values = s.ToOrtValues(names);
                try
                {
                    using var run = new RunOptions();
                    var wanted = m.Outputs.Select(o => o.Name).Concat(m.State.Select(x => x.Output)).ToArray();
                    using var res = session.Run(run, names, values, wanted);
                    for (var o = 0; o < m.Outputs.Count; o++) perOutput[o].Add(res[o].GetTensorDataAsSpan<float>().ToArray());
                    for (var i = 0; i < m.State.Count; i++) state[m.State[i].Input] = SampleTensor.Copy(res[m.Outputs.Count + i]);
                }
                finally
                {
                    foreach (var v in values) v.Dispose();
                }

                progress?.Invoke(k + 1, samples.Count);
            }

            for (var o = 0; o < m.Outputs.Count; o++)
            {
                var spec0 = m.Outputs[o];
                if (spec0.Kind == OutputKinds.Classification && spec0.Labels is { Count: > 0 } labels)
                {
                    var probs = perOutput[o].Select(v => spec0.Softmax ? Softmax(v) : v).ToList();
                    for (var c = 0; c < labels.Count; c++) outputs.Add(Feature($"p_{labels[c]}", probs.Select(p => (double)p[c]).ToList(), ProbabilityEdges));
                    if (o == 0)
                    {
                        var top = probs.Select(p => Array.IndexOf(p, p.Max())).ToList();
                        outputs.Add(new FeatureBaseline
                        {
                            Name = "label", Count = top.Count,
                            Categories = labels.Select((l, c) => (l, c)).ToDictionary(x => x.l, x => (long)top.Count(t => t == x.c)),
                        });
                    }
                }
                else
                {
                    outputs.Add(Feature(spec0.Name, perOutput[o].SelectMany(v => v.Select(x => (double)x)).ToList(), null));
                }
            }

        }

        return new DriftBaseline
        {
            Samples = result.Samples,
            Reference = $"{Path.GetFileName(reference.TrimEnd('/'))}: {samples.Count} windows, {result.Samples} samples (edgeml model package)",
            Thresholds = m.Baseline?.Thresholds,
            Features = features,
            Outputs = outputs,
        };
    }

    private static float[] Softmax(float[] v)
    {
        var max = v.Max();
        var e = v.Select(x => MathF.Exp(x - max)).ToArray();
        var sum = e.Sum();
        return e.Select(x => x / sum).ToArray();
    }

    /// <summary>Count, moments, min/max, quantiles, and a histogram over <paramref name="edges"/> (default: the deciles) with two overflow bins.</summary>
    public static FeatureBaseline Feature(string name, List<double> values, double[]? edges)
    {
        var sorted = values.Order().ToArray();
        var n = sorted.Length;
        double Quantile(double p)
        {
            var h = (n - 1) * p;
            var lo = (int)Math.Floor(h);
            var hi = Math.Min(n - 1, lo + 1);
            return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
        }

        edges ??= Enumerable.Range(0, 11).Select(i => Quantile(i / 10.0)).Distinct().ToArray();
        var counts = new long[edges.Length + 1];
        foreach (var v in values)
        {
            // numpy.searchsorted(edges, v, side="right"): the number of edges <= v.
            var k = Array.BinarySearch(edges, v);
            k = k >= 0 ? UpperBound(edges, v) : ~k;
            counts[k]++;
        }

        var mean = values.Average();
        var variance = n > 1 ? values.Sum(v => (v - mean) * (v - mean)) / (n - 1) : 0;
        return new FeatureBaseline
        {
            Name = name, Count = n, Mean = mean, Variance = variance, Min = sorted[0], Max = sorted[^1],
            Edges = [.. edges], Counts = [.. counts], QuantileProbabilities = [.. QuantileProbabilities], Quantiles = QuantileProbabilities.Select(Quantile).ToList(),
        };
    }

    private static int UpperBound(double[] edges, double v)
    {
        var k = 0;
        while (k < edges.Length && edges[k] <= v) k++;
        return k;
    }

    private static List<double>[] CsvChannels(string reference, List<string> channels)
    {
        var files = Directory.Exists(reference) ? Directory.GetFiles(reference, "*.csv").Order(StringComparer.Ordinal).ToArray() : [reference];
        var result = channels.Select(_ => new List<double>()).ToArray();
        foreach (var f in files)
        {
            var lines = File.ReadLines(f).ToList();
            var header = lines[0].Split(',').Select(h => h.Trim()).ToArray();
            var idx = channels.Select(ch => Array.FindIndex(header, h => string.Equals(h, ch, StringComparison.OrdinalIgnoreCase))).ToArray();
            foreach (var line in lines.Skip(1).Where(l => l.Length > 0))
            {
                var cells = line.Split(',');
                for (var c = 0; c < idx.Length; c++) result[c].Add(double.Parse(cells[idx[c]], CultureInfo.InvariantCulture));
            }
        }

        return result;
    }

    private static List<double>[] TensorChannels(List<Sample> samples, InputSpec spec)
    {
        var c = spec.Source!.Channels.Count;
        var t = spec.Source.Window;
        var first = spec.Source.Layout == InputLayouts.ChannelsFirst;
        var result = Enumerable.Range(0, c).Select(_ => new List<double>()).ToArray();
        foreach (var s in samples)
        {
            var data = s.Inputs[spec.Name].Floats();
            for (var k = 0; k < t; k++)
            {
                for (var ch = 0; ch < c; ch++)
                {
                    double v = data[first ? ch * t + k : k * c + ch];
                    if (spec.Normalization is { } norm) v = v * norm.Std[ch] + norm.Mean[ch];
                    result[ch].Add(v);
                }
            }
        }

        return result;
    }
}
