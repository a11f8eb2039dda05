using EdgeMl.ModelTools.Data;
using Microsoft.ML.OnnxRuntime;
using Onnx;

namespace EdgeMl.ModelTools;

public sealed class QuantizeOptions
{
    /// <summary><c>static</c> (QDQ, calibrated activations) or <c>dynamic</c> (int8 weights, activations quantized at run time).</summary>
    public string Mode { get; set; } = "static";
    public CalibrationMethod Method { get; set; } = CalibrationMethod.MinMax;
    /// <summary>For <see cref="CalibrationMethod.Percentile"/>: the share of |x| kept, in percent.</summary>
    public double Percentile { get; set; } = 99.999;
    /// <summary><c>uint8</c> (default: fast on x86 without VNNI and on ARM) or <c>int8</c>.</summary>
    public string ActivationType { get; set; } = "uint8";
    public bool PerChannel { get; set; } = true;
    /// <summary>Node names kept in float.</summary>
    public IReadOnlyCollection<string> Exclude { get; set; } = [];
    /// <summary>Most calibration samples used.</summary>
    public int Limit { get; set; } = 1000;
    /// <summary>The result must agree with the float model at least this well (mean cosine on the check samples, every output).</summary>
    public double MinCosine { get; set; } = 0.99;
    /// <summary>With <see cref="Labels"/>: the most top-1 accuracy (percentage points) int8 may lose against fp32 on the labelled calibration samples.</summary>
    public double? MaxAccuracyDrop { get; set; }
    /// <summary>Class index of each calibration sample (.npy), for <see cref="MaxAccuracyDrop"/>.</summary>
    public string? Labels { get; set; }
    /// <summary>Most layers the sensitivity search keeps in float to reach <see cref="MinCosine"/> (and <see cref="MaxAccuracyDrop"/>).</summary>
    public int MaxFloatLayers { get; set; } = 16;
    /// <summary>Threads ONNX Runtime uses when the float and the int8 model are timed (the target's).</summary>
    public int Threads { get; set; } = 1;
    /// <summary>Write the result even when it is not faster than the float model.</summary>
    public bool AllowSlower { get; set; }
}

public sealed class QuantizeResult
{
    public byte[] Model { get; set; } = [];
    public string Mode { get; set; } = "";
    public int QuantizedNodes { get; set; }
    public int Weights { get; set; }
    public int Activations { get; set; }
    public int WeightOnlyNodes { get; set; }
    public long OpsetIn { get; set; }
    public long OpsetOut { get; set; }
    public int CalibrationSamples { get; set; }
    public long SizeIn { get; set; }
    public long SizeOut { get; set; }
    public List<string> Notes { get; set; } = [];
    /// <summary>Static mode: each quantized activation's calibrated range [lo, hi].</summary>
    public Dictionary<string, float[]> Ranges { get; set; } = [];
    /// <summary>Nodes left in float by the checks, with why (node name → reason).</summary>
    public Dictionary<string, string> KeptFloat { get; set; } = [];
    /// <summary>The post-quantization check: the result loaded from its file and run beside the float model.</summary>
    public QuantizationCheck.Outcome? Check { get; set; }
    /// <summary>Nodes quantized (their names), weight-only ones included.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public HashSet<string> QuantizedNames { get; } = new(StringComparer.Ordinal);
    /// <summary>Layers quantized, by op type (weight-only ones as "LSTM (weight-only)" …).</summary>
    public Dictionary<string, int> QuantizedOps { get; set; } = [];

    internal void Quantized(NodeProto n, bool weightOnly = false)
    {
        QuantizedNames.Add(n.Name);
        var key = weightOnly ? $"{n.OpType} (weight-only)" : n.OpType;
        QuantizedOps[key] = QuantizedOps.GetValueOrDefault(key) + 1;
        if (weightOnly) WeightOnlyNames.Add(n.Name);
    }
    /// <summary>Nodes whose weights are int8 but compute in float (LSTM/GRU/RNN, layers inside subgraphs in static mode).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public HashSet<string> WeightOnlyNames { get; } = new(StringComparer.Ordinal);
}

/// <summary>
/// int8 quantization of ONNX models, written as plain ONNX that ONNX Runtime fuses:
/// <list type="bullet">
/// <item><b>static</b> (QDQ): weights of Conv, MatMul and Gemm symmetric int8, per output channel by default; biases
/// int32 at input scale × weight scale; QuantizeLinear→DequantizeLinear pairs on the inputs <i>and outputs</i> of
/// Conv, MatMul, Gemm and the ops ONNX Runtime fuses with them (Relu, Clip, Add, pooling, Concat, Flatten, Reshape,
/// Transpose, Sigmoid, LeakyRelu), with activation ranges calibrated on data;</item>
/// <item><b>dynamic</b>: MatMul and Gemm with constant weights become DynamicQuantizeLinear → MatMulInteger (int8
/// weights, per column) → scale, which ONNX Runtime runs as DynamicQuantizeMatMul;</item>
/// <item>LSTM, GRU and RNN weights (both modes): stored int8 and dequantized (weight-only: the recurrence runs in
/// float, which ONNX Runtime has no int8 kernel for in QDQ form).</item>
/// </list>
/// The result is loaded and run by ONNX Runtime before it is returned.
/// </summary>
public static class Quantizer
{
    private static readonly IReadOnlySet<string> Weighted = new HashSet<string> { "Conv", "MatMul", "Gemm" };
    private static readonly IReadOnlySet<string> Recurrent = new HashSet<string> { "LSTM", "GRU", "RNN" };

    /// <summary>Ops whose float activations are wrapped in Q/DQ so that ONNX Runtime can fuse them into int8 kernels.</summary>
    private static readonly IReadOnlySet<string> Fusable = new HashSet<string>
    {
        "Relu", "Clip", "Add", "MaxPool", "AveragePool", "GlobalAveragePool", "Concat", "Flatten", "Reshape", "Transpose", "Sigmoid", "LeakyRelu",
    };

    /// <summary>Ops whose output 0 is float when their input 0 is (to tell activations from shape tensors).</summary>
    private static readonly IReadOnlySet<string> FloatPreserving = new HashSet<string>
    {
        "Conv", "MatMul", "Gemm", "Relu", "Clip", "Add", "Sub", "Mul", "Div", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
        "Concat", "Flatten", "Reshape", "Transpose", "Sigmoid", "LeakyRelu", "Tanh", "Softmax", "BatchNormalization", "Dropout", "Identity",
        "Squeeze", "Unsqueeze", "Slice", "Gather", "Pad", "Resize", "ReduceMean", "LSTM", "GRU", "RNN", "Erf", "Exp", "Sqrt", "Pow",
        "LayerNormalization", "Split", "Elu", "HardSigmoid", "Softplus", "Max", "Min", "Sum", "Expand", "Tile",
    };

    /// <summary>
    /// Quantizes <paramref name="input"/>; the result is written to a file (<paramref name="output"/>, or a temporary
    /// one), loaded by ONNX Runtime from there and run beside the float model on the calibration samples. Layers that
    /// cost accuracy (below <see cref="QuantizeOptions.MinCosine"/>) or time (int8 slower than float) are kept in float;
    /// if no result passes, nothing is written and the error says why.
    /// </summary>
    /// <exception cref="ModelToolException">Bad model or data, nothing to quantize, or no result that passes the checks.</exception>
    public static QuantizeResult Quantize(string input, string? calibration, QuantizeOptions options, Protocol.Packages.ModelManifest? manifest = null,
        Action<int, int>? progress = null, string? output = null)
    {
        if (options.Mode is not ("static" or "dynamic")) throw new ModelToolException($"mode {options.Mode}: static or dynamic");
        var reference = OnnxGraph.Load(input);
        Refuse(reference);
        GraphRewrites.RefuseFloat16Computation(reference);
        if (options.MaxAccuracyDrop is not null && (options.Labels is null || calibration is null)) throw new ModelToolException("--max-accuracy-drop needs --calibration data and --labels (a class index per calibration sample)");
        var labels = options.Labels is null ? null : NumPy.Load(options.Labels).Values.First().Data;
        var samples = CheckSamples(reference, calibration, manifest, labels is null ? 16 : Math.Min(labels.Length, 256));
        using var check = new QuantizationCheck(reference, samples, options.Threads, labels);
        var excluded = options.Exclude.ToDictionary(e => e, _ => "--exclude", StringComparer.Ordinal);
        var ranges = new Dictionary<string, (float Lo, float Hi)>(StringComparer.Ordinal);
        var dir = output is not null ? System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(output))! : null;
        var temp = Directory.CreateTempSubdirectory("edgeml-quantize-");
        try
        {
            var candidate = System.IO.Path.Combine(dir ?? temp.FullName, $".{System.IO.Path.GetFileName(output ?? "model.onnx")}.{Environment.ProcessId}.tmp");
            var tried = new HashSet<string>(StringComparer.Ordinal);
            var bestScore = double.NegativeInfinity;
            var stale = 0;
            string? lastAccuracyExclusion = null;
            while (true)
            {
                var (g, result) = Build(input, calibration, options, manifest, progress, excluded, ranges);
                var seen = check.Measure(g, candidate);
                result.Check = seen;
                var worst = seen.Outputs.MinBy(o => o.Cosine)!;
                var failsAccuracy = options.MaxAccuracyDrop is { } maxDrop && seen.AccuracyDropPoints > maxDrop;
                if (worst.Cosine < options.MinCosine || failsAccuracy)
                {
                    // The search stops when keeping the last two layers in float did not help (the loss is elsewhere: activations).
                    var score = failsAccuracy ? -seen.AccuracyDropPoints!.Value : worst.Cosine;
                    stale = lastAccuracyExclusion is null || score > bestScore ? 0 : stale + 1;
                    bestScore = Math.Max(bestScore, score);
                    var damaging = stale < 2 ? check.MostDamaging(g, result.QuantizedNames, excluded.Keys) : null;
                    if (damaging is null || excluded.Count(e => e.Value.StartsWith("accuracy", StringComparison.Ordinal)) >= options.MaxFloatLayers
                        || result.QuantizedNames.All(n => n == damaging.Value.Node || excluded.ContainsKey(n)))
                    {
                        var what = failsAccuracy
                            ? $"loses {-bestScore:0.##} points of top-1 accuracy on {samples.Count} labelled calibration samples (bound {options.MaxAccuracyDrop})"
                            : $"agrees with the float one only to cosine {bestScore:0.####} on output '{worst.Name}' (bound {options.MinCosine})";
                        throw new ModelToolException($"{input}: the int8 model {what}, " +
                            $"{(excluded.Count > 0 ? $"also with layers kept in float ({string.Join(", ", excluded.Keys.Take(8))})" : "and no single layer is to blame")}; nothing written (loosen the bound, or calibrate with more representative data)");
                    }

                    lastAccuracyExclusion = damaging.Value.Node;
                    excluded[damaging.Value.Node] = $"accuracy: its output agrees to cosine {damaging.Value.Cosine:0.####} after quantization";
                    continue;
                }

                if (seen.LatencyRatio > 1.0 && !options.AllowSlower)
                {
                    // Timing on a busy machine is noisy: the better of two measurements decides.
                    var again = check.Measure(g, candidate);
                    if (again.LatencyRatio < seen.LatencyRatio) result.Check = seen = seen with { ReferenceMs = again.ReferenceMs, CandidateMs = again.CandidateMs };
                }

                if (seen.LatencyRatio > 1.0 && !options.AllowSlower)
                {
                    // Slower than float: keep in float the group whose int8 costs most, and try again.
                    var group = SlowGroups(g, result).FirstOrDefault(x => tried.Add(x.Reason));
                    if (group.Nodes is null || group.Nodes.Count == 0)
                    {
                        throw new ModelToolException($"{input}: int8 is slower than float32 here ({seen.CandidateMs:0.###} ms against {seen.ReferenceMs:0.###} ms, {options.Threads} thread(s)), " +
                            $"also with {excluded.Count} node(s) kept in float; nothing written (pure arithmetic graphs and tiny layers gain nothing from int8; --allow-slower writes it anyway)");
                    }

                    foreach (var n in group.Nodes) excluded.TryAdd(n, $"latency: {group.Reason} made the model slower ({seen.CandidateMs:0.###} ms against {seen.ReferenceMs:0.###} ms float)");
                    if (result.QuantizedNames.All(excluded.ContainsKey))
                    {
                        throw new ModelToolException($"{input}: int8 is slower than float32 here ({seen.CandidateMs:0.###} ms against {seen.ReferenceMs:0.###} ms, {options.Threads} thread(s)) with every quantizable node; nothing written (--allow-slower writes it anyway)");
                    }

                    continue;
                }

                foreach (var (node, why) in excluded) result.KeptFloat[node] = why;
                result.Model = File.ReadAllBytes(candidate);
                result.SizeOut = new FileInfo(candidate).Length + (File.Exists(candidate + ".data") ? new FileInfo(candidate + ".data").Length : 0);
                if (output is not null)
                {
                    if (File.Exists(candidate + ".data"))
                    {
                        // The .onnx names its data file: rewrite it under the output's name.
                        g.Save(output, 0);
                        File.Delete(candidate + ".data");
                    }
                    else
                    {
                        if (File.Exists(output + ".data")) File.Delete(output + ".data");
                        File.Move(candidate, output, overwrite: true);
                    }
                }

                File.Delete(candidate);
                return result;
            }
        }
        finally
        {
            temp.Delete(recursive: true);
            if (dir is not null)
            {
                foreach (var f in Directory.GetFiles(dir, $".{System.IO.Path.GetFileName(output)}.{Environment.ProcessId}.tmp*")) File.Delete(f);
            }
        }
    }

    /// <summary>Groups of quantized nodes to keep in float when int8 is slower, the likeliest culprits first.</summary>
    private static IEnumerable<(string Reason, List<string> Nodes)> SlowGroups(OnnxGraph g, QuantizeResult result)
    {
        var inits = g.AllInitializers();
        var nodes = g.Nodes().Where(n => result.QuantizedNames.Contains(n.Name)).ToList();
        long Weights(NodeProto n) => n.Input.Where(i => i.EndsWith("_i8", StringComparison.Ordinal) || i.EndsWith("_dq", StringComparison.Ordinal))
            .Select(i => inits.GetValueOrDefault(i.EndsWith("_dq", StringComparison.Ordinal) ? i[..^3] + "_i8" : i)).Where(t => t is not null).Sum(t => OnnxGraph.Elements(t!));
        yield return ("layers with fewer than 16,384 weights", nodes.Where(n => Weights(n) < 16384).Select(n => n.Name).ToList());
        yield return ("weight-only quantization (LSTM/GRU/RNN, and layers inside If/Loop/Scan)", result.WeightOnlyNames.ToList());
        foreach (var op in nodes.GroupBy(n => n.OpType).OrderBy(x => x.Count()))
        {
            yield return ($"{op.Key} layers", op.Select(n => n.Name).ToList());
        }
    }

    /// <summary>The samples the result is checked on: up to 16 calibration samples, or made ones (normal floats, zero integers) without calibration data.</summary>
    private static List<Sample> CheckSamples(OnnxGraph reference, string? calibration, Protocol.Packages.ModelManifest? manifest, int limit)
    {
        var inputs = reference.RealInputs().Select(ModelInput.Of).ToList();
        if (calibration is not null) return SampleSet.Load(calibration, inputs, manifest, limit);
        var random = new Random(7);
        return Enumerable.Range(0, 4).Select(_ =>
        {
            var s = new Sample();
            foreach (var i in inputs)
            {
                var shape = i.Shape.Select(d => d > 0 ? d : 1).ToArray();
                var count = shape.Aggregate(1L, (a, b) => a * b);
                s.Inputs[i.Name] = i.Type == Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float
                    ? (Enumerable.Range(0, (int)count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray(), shape)
                    : SampleTensor.Zeros(shape, i.Type, $"input '{i.Name}'");
            }

            return s;
        }).ToList();
    }

    /// <summary>One quantization of the model with <paramref name="excluded"/> nodes in float (calibrated ranges cached in <paramref name="ranges"/>).</summary>
    private static (OnnxGraph Graph, QuantizeResult Result) Build(string input, string? calibration, QuantizeOptions options, Protocol.Packages.ModelManifest? manifest,
        Action<int, int>? progress, IReadOnlyDictionary<string, string> excludedNodes, Dictionary<string, (float Lo, float Hi)> ranges)
    {
        var g = OnnxGraph.Load(input);
        var result = new QuantizeResult { Mode = options.Mode, OpsetIn = g.Opset, SizeIn = g.SizeBytes };
        GraphRewrites.Prepare(g, result.Notes);
        var all = g.Nodes().Select(n => n.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var name in excludedNodes.Where(e => e.Value == "--exclude").Select(e => e.Key))
        {
            if (!all.Contains(name))
            {
                throw new ModelToolException($"--exclude {name}: no node of that name in {g.Source} (quantizable nodes: {string.Join(", ", g.Nodes().Where(n => Weighted.Contains(n.OpType) || Recurrent.Contains(n.OpType)).Select(n => n.Name).Take(12))})");
            }
        }

        OpsetUpgrade.Apply(g, result.Notes);
        var inits = g.AllInitializers();
        bool Constant(string t) => inits.TryGetValue(t, out var i) && i.DataType == (int)TensorProto.Types.DataType.Float;
        var excluded = excludedNodes.Keys.ToHashSet(StringComparer.Ordinal);
        var weighted = g.Graph.Node.Where(n => !excluded.Contains(n.Name) && Weighted.Contains(n.OpType) && WeightIndex(n, Constant) >= 0).ToList();
        if (options.Mode == "dynamic") weighted = weighted.Where(n => n.OpType != "Conv" && (n.OpType != "Gemm" || OnnxGraph.IntAttribute(n, "transA", 0) == 0)).ToList();
        var weightOnly = new List<(GraphProto Graph, NodeProto Node)>();
        var dynamicInSubgraphs = new List<(GraphProto Graph, NodeProto Node)>();
        foreach (var graph in g.Graphs())
        {
            var main = ReferenceEquals(graph, g.Graph);
            foreach (var n in graph.Node.Where(n => !excluded.Contains(n.Name)))
            {
                if (Recurrent.Contains(n.OpType) && n.Input.Count > 2 && Constant(n.Input[1]) && Constant(n.Input[2])) weightOnly.Add((graph, n));
                else if (!main && Weighted.Contains(n.OpType) && WeightIndex(n, Constant) >= 0)
                {
                    if (options.Mode == "dynamic" && DynamicWeight(n, inits) is not null) dynamicInSubgraphs.Add((graph, n));
                    else weightOnly.Add((graph, n));
                }
            }
        }

        if (weighted.Count == 0 && weightOnly.Count == 0 && dynamicInSubgraphs.Count == 0)
        {
            var ops = string.Join(", ", g.Nodes().Select(n => n.OpType).Distinct().Take(15));
            throw new ModelToolException($"{g.Source}: nothing to quantize in {options.Mode} mode: no {(options.Mode == "dynamic" ? "MatMul or Gemm" : "Conv, MatMul or Gemm")} with constant weights, and no LSTM/GRU/RNN{(excluded.Count > 0 ? " that is not kept in float" : "")} (the model has: {ops})");
        }

        if (options.Mode == "dynamic")
        {
            if (weighted.Count > 0) Dynamic(g.Graph, weighted, inits, options, result);
        }
        else
        {
            if (calibration is null) throw new ModelToolException("static quantization needs calibration data (--calibration FILE.npy|.npz|.csv)");
            Static(g, weighted, excluded, Constant, calibration!, options, manifest, progress, result, ranges);
        }

        foreach (var group in dynamicInSubgraphs.GroupBy(x => x.Graph, ReferenceEqualityComparer.Instance))
        {
            Dynamic((GraphProto)group.Key!, group.Select(x => x.Node).ToList(), inits, options, result);
        }

        WeightOnly(weightOnly, inits, options, result);
        GraphRewrites.Prune(g);
        GraphRewrites.SortAll(g);
        if (g.Opset < OpsetUpgrade.Target) g.SetOpset(OpsetUpgrade.Target);
        g.Model.ProducerName = "edgeml model quantize";
        g.Model.ProducerVersion = "";
        // What the packager writes into the manifest's quantization section.
        g.Model.MetadataProps.Add(new StringStringEntryProto { Key = "edgeml.reference_sha256", Value = g.OriginalSha256 });
        g.Model.MetadataProps.Add(new StringStringEntryProto
        {
            Key = "edgeml.calibration",
            Value = options.Mode == "dynamic" ? "dynamic: none needed" : $"{options.Method.ToString().ToLowerInvariant()}{(options.Method == CalibrationMethod.Percentile ? $" {options.Percentile}%" : "")}, {result.CalibrationSamples} samples of {Path.GetFileName(calibration?.TrimEnd('/') ?? "")}",
        });
        result.OpsetOut = g.Opset;
        return (g, result);
    }

    /// <summary>Already quantized, or nothing to work on: a clear message, not a broken file.</summary>
    private static void Refuse(OnnxGraph g)
    {
        var quantized = g.Nodes().Where(n => OnnxGraph.QuantizedOps.Contains(n.OpType)).Select(n => n.OpType).Distinct().ToList();
        var int8 = g.Graphs().SelectMany(x => x.Initializer).Count(t => t.DataType is (int)TensorProto.Types.DataType.Int8 or (int)TensorProto.Types.DataType.Uint8);
        if (quantized.Count > 0 || int8 > 0)
        {
            throw new ModelToolException($"{g.Source} is already quantized ({(quantized.Count > 0 ? string.Join(", ", quantized) : $"{int8} int8 tensors")}): quantize the float model it was made from");
        }
    }

    /// <summary>The constant weight input of a Conv/MatMul/Gemm (1 for Conv and Gemm, 1 or 0 for MatMul), or -1.</summary>
    private static int WeightIndex(NodeProto n, Func<string, bool> constant) => n.OpType switch
    {
        "Conv" or "Gemm" => n.Input.Count > 1 && constant(n.Input[1]) ? 1 : -1,
        "MatMul" => constant(n.Input[1]) ? 1 : constant(n.Input[0]) ? 0 : -1,
        _ => -1,
    };

    /// <summary>Which axis of the weight holds the output channels (-1: per tensor only).</summary>
    private static int ChannelAxis(NodeProto n, TensorProto w, int index) => n.OpType switch
    {
        "Conv" => 0,
        "Gemm" => OnnxGraph.IntAttribute(n, "transB", 0) == 1 ? 0 : 1,
        "MatMul" when index == 1 && w.Dims.Count == 2 => 1,
        _ => -1,
    };

    /// <summary>Symmetric int8: per channel along <paramref name="axis"/> (or per tensor when -1).</summary>
    /// <param name="minScale">Per channel (or one value), the smallest scale allowed (so that a bias at input scale × weight scale fits int32).</param>
    internal static (sbyte[] Q, float[] Scale) Symmetric(float[] w, long[] dims, int axis, float[]? minScale = null)
    {
        var channels = axis < 0 ? 1 : (int)dims[axis];
        var inner = axis < 0 ? w.Length : (int)dims.Skip(axis + 1).Aggregate(1L, (a, b) => a * b);
        var maxAbs = new float[channels];
        for (var i = 0; i < w.Length; i++)
        {
            var c = axis < 0 ? 0 : i / inner % channels;
            maxAbs[c] = Math.Max(maxAbs[c], Math.Abs(w[i]));
        }

        var scale = maxAbs.Select((m, c) => Math.Max(m > 0 ? m / 127f : 1f, minScale is null ? 0 : minScale[Math.Min(c, minScale.Length - 1)])).ToArray();
        var q = new sbyte[w.Length];
        for (var i = 0; i < w.Length; i++)
        {
            var c = axis < 0 ? 0 : i / inner % channels;
            q[i] = (sbyte)Math.Clamp(MathF.Round(w[i] / scale[c]), -127, 127);
        }

        return (q, scale);
    }

    /// <summary>
    /// A float weight stored as symmetric int8 (per channel along <paramref name="axis"/>, or per tensor when -1): its
    /// int8 tensor, scale and zero point are added as initializers; returns the DequantizeLinear that yields it in float.
    /// </summary>
    private static (NodeProto Node, float[] Scale) DequantizedWeight(GraphProto g, string name, TensorProto weight, int axis, float[]? minScale = null)
    {
        var (q, s) = Symmetric(OnnxGraph.Floats(weight), [.. weight.Dims], axis, minScale);
        g.Initializer.Add(OnnxGraph.Int8Tensor($"{name}_i8", q, [.. weight.Dims]));
        g.Initializer.Add(axis < 0 ? OnnxGraph.FloatTensor($"{name}_s", s) : OnnxGraph.FloatTensor($"{name}_s", s, s.Length));
        g.Initializer.Add(axis < 0 ? OnnxGraph.Int8Tensor($"{name}_z", [0]) : OnnxGraph.Int8Tensor($"{name}_z", new sbyte[s.Length], s.Length));
        var node = OnnxGraph.Node("DequantizeLinear", "", [$"{name}_i8", $"{name}_s", $"{name}_z"], [$"{name}_dq"]);
        if (axis >= 0) node.Attribute.Add(OnnxGraph.Int("axis", axis));
        return (node, s);
    }

    private static void Static(OnnxGraph g, List<NodeProto> weighted, HashSet<string> excluded, Func<string, bool> constant, string calibration,
        QuantizeOptions options, Protocol.Packages.ModelManifest? manifest, Action<int, int>? progress, QuantizeResult result, Dictionary<string, (float Lo, float Hi)> cache)
    {
        // Which tensors are float activations.
        var inits = g.Initializers();
        var isFloat = g.RealInputs().Where(i => i.Type?.TensorType?.ElemType == (int)TensorProto.Types.DataType.Float).Select(i => i.Name).ToHashSet();
        foreach (var n in g.Graph.Node)
        {
            var floatIn = n.Input.Count > 0 && (isFloat.Contains(n.Input[0]) || constant(n.Input[0]) || (n.OpType == "MatMul" && isFloat.Contains(n.Input[1])));
            if (n.OpType == "Cast" && OnnxGraph.IntAttribute(n, "to", 0) == (int)TensorProto.Types.DataType.Float) floatIn = true;
            if (floatIn && (FloatPreserving.Contains(n.OpType) || n.OpType == "Cast"))
            {
                foreach (var o in n.Output.Where(o => o.Length > 0)) isFloat.Add(o);
            }
        }

        // Nodes by reference: protobuf messages compare by value, and rewiring a node's inputs changes its hash.
        var weightedSet = weighted.ToHashSet(ReferenceEqualityComparer.Instance);
        var quantizable = g.Graph.Node.Where(n => !excluded.Contains(n.Name) && (weightedSet.Contains(n) || Fusable.Contains(n.OpType))).ToHashSet(ReferenceEqualityComparer.Instance);
        var tensors = new List<string>();
        var seen = new HashSet<string>();
        // A layer kept in float keeps its input and output in float too (a quantized neighbour would requantize them).
        var keptFloat = g.Graph.Node.Where(n => excluded.Contains(n.Name) && Weighted.Contains(n.OpType)).SelectMany(n => n.Input.Concat(n.Output)).ToHashSet(StringComparer.Ordinal);
        bool Activation(string t) => t.Length > 0 && isFloat.Contains(t) && !inits.ContainsKey(t) && !keptFloat.Contains(t);
        void Want(string t)
        {
            if (Activation(t) && seen.Add(t)) tensors.Add(t);
        }

        // Q/DQ pairs only where ONNX Runtime runs an int8 kernel beside them: a pair between two float ops is a
        // requantization that costs two passes over the tensor and adds error. Add and Concat fuse (QLinearAdd,
        // QLinearConcat) only when every input is a quantized activation, and pay beside a quantized layer; the other
        // fusable ops (Relu, Clip, pooling, Reshape, Transpose, Sigmoid …) and an Add of a constant (a MatMul's bias,
        // hard-swish's x + 3) keep their pairs only between a quantized op and a quantized reader (a bias Add then
        // takes the Relu after it: one requantization in the positive range, as before). Dropped until nothing changes.
        var producerOf = g.Graph.Node.SelectMany(n => n.Output.Select(o => (o, n))).GroupBy(x => x.o).ToDictionary(x => x.Key, x => x.First().n);
        var readers = g.Graph.Node.SelectMany(n => n.Input.Select(i => (i, n))).ToLookup(x => x.i, x => x.n);
        bool Quantized(string t) => producerOf.TryGetValue(t, out var p) && quantizable.Contains(p);
        for (var changed = true; changed;)
        {
            changed = false;
            foreach (var n in quantizable.Cast<NodeProto>().Where(n => !weightedSet.Contains(n)).ToList())
            {
                var data = n.Input.Where(Activation).ToList();
                bool keep;
                if (n.OpType is "Add" or "Concat" && data.Count == n.Input.Count) keep = n.Input.Any(Quantized) || readers[n.Output[0]].Any(weightedSet.Contains);
                else if (data.Count == 1 && (data[0] == n.Input[0] || n.OpType == "Add")) keep = Quantized(data[0]) && readers[n.Output[0]].Any(quantizable.Contains);
                else keep = false;
                if (keep) continue;
                quantizable.Remove(n);
                changed = true;
            }
        }

        foreach (var n in g.Graph.Node.Where(quantizable.Contains))
        {
            var dataInputs = n.OpType switch
            {
                "Add" or "Concat" => n.Input.ToList(),
                "MatMul" => n.Input.ToList(),
                _ => [n.Input[0]],
            };
            foreach (var t in dataInputs) Want(t);
            Want(n.Output[0]);
        }

        var inputs = g.RealInputs().Select(ModelInput.Of).ToList();
        var samples = SampleSet.Load(calibration, inputs, manifest, options.Limit, result.Notes);
        result.CalibrationSamples = samples.Count;
        var missing = tensors.Where(t => !cache.ContainsKey(t)).ToList();
        if (missing.Count > 0)
        {
            foreach (var (t, r) in Calibrator.Ranges(g, missing, samples, options.Method, options.Percentile, progress)) cache[t] = r;
        }

        var ranges = tensors.ToDictionary(t => t, t => cache[t]);
        foreach (var (t, (lo, hi)) in ranges) result.Ranges[t] = [lo, hi];
        var int8Activations = options.ActivationType == "int8";
        if (options.ActivationType is not ("uint8" or "int8")) throw new ModelToolException($"--activation-type {options.ActivationType}: uint8 or int8");

        // A Relu right after a Conv/Gemm/MatMul/Add (its only consumer) is folded away: the op writes the Relu's output
        // and is quantized with the Relu's range, whose zero point is the type's minimum, so the quantizer clamps at zero
        // exactly as the Relu did (ONNX Runtime's quantizer does the same). Saves a requantization per layer. Only where
        // every reader of the Relu's output reads the dequantized tensor.
        var consumers = g.Graph.Node.SelectMany(n => n.Input.Select(i => (i, n))).ToLookup(x => x.i, x => x.n);
        var graphOutputs = g.Graph.Output.Select(o => o.Name).ToHashSet();
        var folded = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        foreach (var relu in g.Graph.Node.Where(n => n.OpType == "Relu" && quantizable.Contains(n)).ToList())
        {
            var t = relu.Input[0];
            var o = relu.Output[0];
            var producer = g.Graph.Node.FirstOrDefault(n => n.Output.Count > 0 && n.Output[0] == t);
            if (producer is null || !quantizable.Contains(producer) || producer.OpType is not ("Conv" or "Gemm" or "MatMul" or "Add")) continue;
            if (consumers[t].Count() != 1 || graphOutputs.Contains(t) || graphOutputs.Contains(o) || !ranges.ContainsKey(o)) continue;
            if (!consumers[o].All(quantizable.Contains)) continue;
            producer.Output[0] = o;
            folded.Add(relu);
            tensors.Remove(t);
        }

        if (folded.Count > 0) result.Notes.Add($"{folded.Count} Relu folded into the quantization of the op before them");
        var prefix = new List<NodeProto>();
        var scales = new Dictionary<string, float>();
        var dq = new Dictionary<string, string>();
        var qdq = new Dictionary<string, List<NodeProto>>();
        foreach (var t in tensors)
        {
            // Short names for the activation's scale, zero point and quantized tensor (each appears several times in the file).
            var k = $"edgeml_a{qdq.Count}";
            var (lo, hi) = ranges[t];
            if (!float.IsFinite(lo) || !float.IsFinite(hi)) throw new ModelToolException($"calibration: tensor '{t}' has no finite range (NaN or infinity in the data or the model)");
            lo = Math.Min(lo, 0);
            hi = Math.Max(hi, 0);
            var scale = (hi - lo) / 255f;
            if (scale <= 0) scale = 1f;
            TensorProto zp;
            if (int8Activations)
            {
                zp = OnnxGraph.Int8Tensor($"{k}_z", [(sbyte)Math.Clamp(MathF.Round(-128 - lo / scale), -128, 127)]);
            }
            else
            {
                zp = OnnxGraph.UInt8Tensor($"{k}_z", [(byte)Math.Clamp(MathF.Round(-lo / scale), 0, 255)]);
            }

            g.Graph.Initializer.Add(OnnxGraph.FloatTensor($"{k}_s", [scale]));
            g.Graph.Initializer.Add(zp);
            scales[t] = scale;
            dq[t] = $"{t}_dq";
            // Q/DQ nodes stay unnamed (names are optional): exporters' long tensor names would otherwise add a few per cent to a small model.
            qdq[t] =
            [
                OnnxGraph.Node("QuantizeLinear", "", [t, $"{k}_s", $"{k}_z"], [$"{k}_q"]),
                OnnxGraph.Node("DequantizeLinear", "", [$"{k}_q", $"{k}_s", $"{k}_z"], [dq[t]]),
            ];
        }

        // Weights and biases.
        var weightDq = new Dictionary<string, (string Name, float[] Scale)>();
        foreach (var n in weighted)
        {
            var wi = WeightIndex(n, constant);
            var wt = inits[n.Input[wi]];
            var axis = options.PerChannel ? ChannelAxis(n, wt, wi) : -1;
            var key = $"{wt.Name}#{axis}";
            if (!weightDq.TryGetValue(key, out var w))
            {
                // A channel whose weights are tiny beside its bias (BatchNorm folded into a near-dead channel) would need
                // a bias past int32 at input scale × weight scale: its weight scale is raised until the bias fits.
                float[]? minScale = null;
                if (n.OpType is "Conv" or "Gemm" && n.Input.Count > 2 && inits.TryGetValue(n.Input[2], out var bias) && bias.Dims.Count == 1
                    && scales.TryGetValue(n.Input[wi == 1 ? 0 : 1], out var inScale))
                {
                    minScale = OnnxGraph.Floats(bias).Select(b => Math.Abs(b) / (inScale * (float)(1 << 30))).ToArray();
                    if (axis < 0) minScale = [minScale.Max()];
                }

                var (node, s) = DequantizedWeight(g.Graph, $"{wt.Name}{(axis >= 0 ? "" : "_pt")}", wt, axis, minScale);
                prefix.Add(node);
                weightDq[key] = w = (node.Output[0], s);
                result.Weights++;
            }

            n.Input[wi] = w.Name;
            result.Quantized(n);
            var dataInput = n.Input[wi == 1 ? 0 : 1];
            var biasIndex = n.OpType is "Conv" or "Gemm" ? 2 : -1;
            if (biasIndex > 0 && n.Input.Count > biasIndex && inits.TryGetValue(n.Input[biasIndex], out var bt) && bt.Dims.Count == 1 && scales.TryGetValue(dataInput, out var xs)
                && (bt.Dims[0] == w.Scale.Length || w.Scale.Length == 1) && OnnxGraph.IntAttribute(n, "transA", 0) == 0 && OnnxGraph.FloatAttribute(n, "beta", 1f) == 1f)
            {
                var b = OnnxGraph.Floats(bt);
                var bs = w.Scale.Length == 1 ? b.Select(_ => xs * w.Scale[0]).ToArray() : w.Scale.Select(s => xs * s).ToArray();
                var bq = b.Select((v, c) => bs[c] > 0 ? (int)Math.Clamp(Math.Round(v / (double)bs[c]), int.MinValue, int.MaxValue) : 0).ToArray();
                var bn = $"{n.Name}_{bt.Name}";
                g.Graph.Initializer.Add(OnnxGraph.Int32Tensor($"{bn}_i32", bq, bq.Length));
                g.Graph.Initializer.Add(OnnxGraph.FloatTensor($"{bn}_s", bs, bs.Length));
                g.Graph.Initializer.Add(OnnxGraph.Int32Tensor($"{bn}_z", new int[bq.Length], bq.Length));
                var node = OnnxGraph.Node("DequantizeLinear", "", [$"{bn}_i32", $"{bn}_s", $"{bn}_z"], [$"{bn}_dq"], OnnxGraph.Int("axis", 0));
                prefix.Add(node);
                n.Input[biasIndex] = node.Output[0];
            }
        }

        // Every reader of a quantized activation reads its dequantized tensor, float ops too (as ONNX Runtime's quantizer
        // does): its QDQ fusions turn Conv/MatMul/… into int8 kernels only when the op's output goes to its
        // QuantizeLinear alone — a float reader beside it (hard-swish after a Conv, Pow after an STFT Conv) keeps the
        // op in float with its weights dequantized on every run. Insert each Q/DQ pair right after its producer.
        var nodes = g.Graph.Node.ToList();
        var ordered = new List<NodeProto>(prefix);
        foreach (var input in g.Graph.Input.Where(i => qdq.ContainsKey(i.Name))) ordered.AddRange(qdq[input.Name]);
        foreach (var n in nodes)
        {
            if (folded.Contains(n)) continue;
            for (var i = 0; i < n.Input.Count; i++)
            {
                if (dq.TryGetValue(n.Input[i], out var d)) n.Input[i] = d;
            }

            if (quantizable.Contains(n)) result.QuantizedNodes++;

            ordered.Add(n);
            foreach (var o in n.Output) if (qdq.TryGetValue(o, out var pair)) ordered.AddRange(pair);
        }

        g.Graph.Node.Clear();
        g.Graph.Node.AddRange(ordered);
        result.Activations = tensors.Count;
        result.Notes.Add($"activations {options.ActivationType}, ranges by {options.Method.ToString().ToLowerInvariant()}{(options.Method == CalibrationMethod.Percentile ? $" ({options.Percentile}%)" : "")} over {samples.Count} samples; weights int8 {(options.PerChannel ? "per channel" : "per tensor")}");
    }

    /// <summary>The constant 2-D right-hand weight a MatMul/Gemm is dynamically quantized by, or null (a constant left operand, another rank: left in float).</summary>
    private static TensorProto? DynamicWeight(NodeProto n, IReadOnlyDictionary<string, TensorProto> inits) =>
        n.OpType is "MatMul" or "Gemm" && n.Input.Count > 1 && inits.TryGetValue(n.Input[1], out var wt) && wt.DataType == (int)TensorProto.Types.DataType.Float
        && wt.Dims.Count == 2 && OnnxGraph.IntAttribute(n, "transA", 0) == 0 ? wt : null;

    private static void Dynamic(GraphProto g, List<NodeProto> weighted, IReadOnlyDictionary<string, TensorProto> inits, QuantizeOptions options, QuantizeResult result)
    {
        var replaced = new Dictionary<NodeProto, List<NodeProto>>(ReferenceEqualityComparer.Instance);
        foreach (var n in weighted)
        {
            if (DynamicWeight(n, inits) is not { } wt) continue;
            var w = OnnxGraph.Floats(wt);
            long k = wt.Dims[0], cols = wt.Dims[1];
            if (n.OpType == "Gemm" && OnnxGraph.IntAttribute(n, "transB", 0) == 1)
            {
                // [N, K] → [K, N]: MatMulInteger multiplies A [.., K] by B [K, N].
                var t = new float[w.Length];
                for (var r = 0; r < k; r++) for (var c = 0; c < cols; c++) t[c * k + r] = w[r * cols + c];
                w = t;
                (k, cols) = (cols, k);
            }

            var (q, scale) = Symmetric(w, [k, cols], options.PerChannel ? 1 : -1);
            var alpha = n.OpType == "Gemm" ? OnnxGraph.FloatAttribute(n, "alpha", 1f) : 1f;
            var p = $"{n.Name}_{n.Output[0]}";
            g.Initializer.Add(OnnxGraph.Int8Tensor($"{p}_W_i8", q, k, cols));
            g.Initializer.Add(scale.Length == 1 ? OnnxGraph.Int8Tensor($"{p}_W_z", [0]) : OnnxGraph.Int8Tensor($"{p}_W_z", new sbyte[scale.Length], scale.Length));
            g.Initializer.Add(scale.Length == 1 ? OnnxGraph.FloatTensor($"{p}_W_s", [scale[0] * alpha]) : OnnxGraph.FloatTensor($"{p}_W_s", scale.Select(s => s * alpha).ToArray(), scale.Length));
            var a = n.Input[0];
            var list = new List<NodeProto>
            {
                OnnxGraph.Node("DynamicQuantizeLinear", $"{p}_DynamicQuantizeLinear", [a], [$"{p}_A_i8", $"{p}_A_s", $"{p}_A_z"]),
                OnnxGraph.Node("MatMulInteger", $"{p}_MatMulInteger", [$"{p}_A_i8", $"{p}_W_i8", $"{p}_A_z", $"{p}_W_z"], [$"{p}_int32"]),
                OnnxGraph.Node("Cast", $"{p}_Cast", [$"{p}_int32"], [$"{p}_float"], OnnxGraph.Int("to", (int)TensorProto.Types.DataType.Float)),
                OnnxGraph.Node("Mul", $"{p}_ScaleMul", [$"{p}_A_s", $"{p}_W_s"], [$"{p}_s"]),
            };
            var hasBias = n.OpType == "Gemm" && n.Input.Count > 2 && n.Input[2].Length > 0;
            list.Add(OnnxGraph.Node("Mul", $"{p}_Mul", [$"{p}_float", $"{p}_s"], [hasBias ? $"{p}_scaled" : n.Output[0]]));
            if (hasBias)
            {
                var beta = OnnxGraph.FloatAttribute(n, "beta", 1f);
                var c = n.Input[2];
                if (beta != 1f)
                {
                    if (!inits.TryGetValue(c, out var ct)) continue;
                    g.Initializer.Add(OnnxGraph.FloatTensor($"{p}_C", OnnxGraph.Floats(ct).Select(v => v * beta).ToArray(), [.. ct.Dims]));
                    c = $"{p}_C";
                }

                list.Add(OnnxGraph.Node("Add", $"{p}_Add", [$"{p}_scaled", c], [n.Output[0]]));
            }

            replaced[n] = list;
            result.Weights++;
            result.QuantizedNodes++;
            result.Quantized(n);
            foreach (var x in list) result.QuantizedNames.Add(x.Name);
        }

        if (replaced.Count == 0) return;
        var ordered = new List<NodeProto>();
        foreach (var n in g.Node) ordered.AddRange(replaced.TryGetValue(n, out var list) ? list : [n]);
        g.Node.Clear();
        g.Node.AddRange(ordered);
        if (!result.Notes.Any(x => x.StartsWith("weights int8 per", StringComparison.Ordinal))) result.Notes.Add($"weights int8 {(options.PerChannel ? "per column" : "per tensor")}; activations uint8, quantized at run time (DynamicQuantizeLinear)");
    }

    /// <summary>
    /// Weight-only: LSTM/GRU/RNN (W and R, per gate row) and, in static mode, Conv/MatMul/Gemm inside If/Loop/Scan
    /// bodies (whose activations cannot be calibrated from outside): weights stored int8 and dequantized, computation in float.
    /// </summary>
    private static void WeightOnly(List<(GraphProto Graph, NodeProto Node)> nodes, IReadOnlyDictionary<string, TensorProto> inits, QuantizeOptions options, QuantizeResult result)
    {
        if (nodes.Count == 0) return;
        foreach (var group in nodes.GroupBy(x => x.Graph, ReferenceEqualityComparer.Instance))
        {
            var graph = (GraphProto)group.Key!;
            var prefix = new List<NodeProto>();
            foreach (var (_, n) in group)
            {
                var recurrent = Recurrent.Contains(n.OpType);
                var indices = recurrent ? [1, 2] : new[] { WeightIndex(n, t => inits.ContainsKey(t)) };
                foreach (var index in indices)
                {
                    var wt = inits[n.Input[index]];
                    var axis = !options.PerChannel ? -1 : recurrent ? (wt.Dims.Count == 3 ? 1 : -1) : ChannelAxis(n, wt, index);
                    var (node, _) = DequantizedWeight(graph, $"{n.Name}_{wt.Name}", wt, axis);
                    prefix.Add(node);
                    n.Input[index] = node.Output[0];
                    result.Weights++;
                }

                result.WeightOnlyNodes++;
                result.Quantized(n, weightOnly: true);
            }

            var all = prefix.Concat(graph.Node).ToList();
            graph.Node.Clear();
            graph.Node.AddRange(all);
        }

        result.Notes.Add($"{nodes.Count} node(s) weight-only ({string.Join(", ", nodes.Select(x => x.Node.OpType).Distinct())}{(nodes.Any(x => !Recurrent.Contains(x.Node.OpType)) ? ", inside If/Loop/Scan bodies" : "")}): weights int8, computation in float");
    }
}

