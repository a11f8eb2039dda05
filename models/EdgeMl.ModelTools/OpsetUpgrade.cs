using Onnx;

namespace EdgeMl.ModelTools;

/// <summary>
/// Prepares a float model for quantization: folds BatchNormalization into the Conv before it (quantization wants
/// the folded weights, and it removes an op), and lifts a model on an older opset (7–12) to opset 13, which QDQ
/// needs for per-channel scales — where that is safe: ops whose meaning did not change are kept; Clip, Pad, Slice,
/// Squeeze, Unsqueeze, ReduceSum and Split get their attributes turned into inputs; Resize 10 and Upsample become
/// Resize 13 with the coordinates they had (asymmetric, nearest rounding down); Dropout (a no-op in inference) is
/// removed. In every graph and subgraph. Anything else is refused with a message that names the ops.
/// </summary>
public static class OpsetUpgrade
{
    public const long Target = 13;

    private static readonly IReadOnlySet<string> Unchanged = new HashSet<string>
    {
        "Conv", "ConvTranspose", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "HardSigmoid", "Softplus", "MaxPool", "AveragePool",
        "GlobalAveragePool", "GlobalMaxPool", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Flatten", "Concat", "Reshape",
        "Transpose", "Identity", "LSTM", "GRU", "RNN", "Exp", "Log", "Sqrt", "Pow", "Abs", "Neg", "Shape", "Gather", "Cast", "Constant",
        "ReduceMean", "ReduceMax", "ReduceMin", "LRN", "Softmax", "Clip", "Squeeze", "Unsqueeze", "Dropout", "BatchNormalization", "Pad", "Erf",
        "Equal", "Greater", "Less", "Where", "Expand", "Tile", "ConstantOfShape", "Floor", "Ceil", "Reciprocal", "Not", "And", "Or",
        "Resize", "Upsample", "Slice", "ReduceSum", "Split", "If", "Loop", "Scan", "Range", "Min", "Max", "Mean", "NonZero", "TopK", "ArgMax", "ArgMin",
        "GreaterOrEqual", "LessOrEqual", "Sign", "Round", "Relu", "PRelu", "ReduceProd", "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare", "InstanceNormalization",
    };

    public static void Apply(OnnxGraph g, List<string> notes)
    {
        FoldBatchNorm(g, notes);
        var opset = g.Opset;
        if (opset >= Target) return;
        if (opset < 7) throw new ModelToolException($"{g.Source}: opset {opset} is too old to upgrade safely (7 or newer is needed; re-export the model)");
        var all = g.Nodes().ToList();
        var unknown = all.Where(n => n.Domain is "" or "ai.onnx" && !Unchanged.Contains(n.OpType)).Select(n => n.OpType).Distinct().ToList();
        unknown.AddRange(all.Where(n => n.OpType == "Resize" && n.Attribute.Any(a => a.Name == "coordinate_transformation_mode" && a.S.ToStringUtf8() == "tf_half_pixel_for_nn"))
            .Select(_ => "Resize (tf_half_pixel_for_nn, gone in opset 13)").Distinct());
        if (unknown.Count > 0)
        {
            throw new ModelToolException($"{g.Source}: opset {opset}; quantization needs opset {Target} (per-channel scales), and these ops cannot be upgraded safely here: {string.Join(", ", unknown)} (re-export at opset 13 or newer)");
        }

        foreach (var graph in g.Graphs().ToList()) Upgrade(g, graph, opset, notes);
        g.SetOpset(Target);
        notes.Add($"opset {opset} upgraded to {Target}");
    }

    /// <summary>One graph's nodes rewritten from <paramref name="opset"/> to opset 13.</summary>
    private static void Upgrade(OnnxGraph g, GraphProto graph, long opset, List<string> notes)
    {
        var inits = graph.Initializer;
        var renamed = new Dictionary<string, string>();
        var result = new List<NodeProto>();

        // An ints attribute becomes an int64 input (appended, or at the given position with "" filling the gap).
        void IntsToInput(NodeProto n, string attribute, int position = -1)
        {
            if (n.Attribute.FirstOrDefault(a => a.Name == attribute) is not { } a)
            {
                return;
            }

            var name = $"{n.Output[0]}_{attribute}";
            inits.Add(OnnxGraph.Int64Tensor(name, [.. a.Ints], a.Ints.Count));
            n.Attribute.Remove(a);
            if (position < 0) n.Input.Add(name);
            else
            {
                while (n.Input.Count <= position) n.Input.Add("");
                n.Input[position] = name;
            }
        }

        foreach (var n in graph.Node)
        {
            for (var i = 0; i < n.Input.Count; i++) if (renamed.TryGetValue(n.Input[i], out var r)) n.Input[i] = r;
            switch (n.OpType)
            {
                case "Dropout":
                    renamed[n.Output[0]] = n.Input[0];
                    continue;
                case "Clip" when opset < 11:
                    var min = n.Attribute.FirstOrDefault(a => a.Name == "min")?.F ?? float.MinValue;
                    var max = n.Attribute.FirstOrDefault(a => a.Name == "max")?.F ?? float.MaxValue;
                    inits.Add(OnnxGraph.FloatTensor($"{n.Output[0]}_min", [min]));
                    inits.Add(OnnxGraph.FloatTensor($"{n.Output[0]}_max", [max]));
                    n.Attribute.Clear();
                    n.Input.Add($"{n.Output[0]}_min");
                    n.Input.Add($"{n.Output[0]}_max");
                    break;
                case "Squeeze" or "Unsqueeze" or "ReduceSum":
                    IntsToInput(n, "axes", 1);
                    break;
                case "Split":
                    IntsToInput(n, "split", 1);
                    break;
                case "Slice" when opset < 10:
                    IntsToInput(n, "starts", 1);
                    IntsToInput(n, "ends", 2);
                    IntsToInput(n, "axes", 3);
                    break;
                case "Pad" when opset < 11:
                    var value = n.Attribute.FirstOrDefault(a => a.Name == "value")?.F ?? 0f;
                    IntsToInput(n, "pads", 1);
                    inits.Add(OnnxGraph.FloatTensor($"{n.Output[0]}_value", [value]));
                    if (n.Attribute.FirstOrDefault(a => a.Name == "value") is { } v) n.Attribute.Remove(v);
                    n.Input.Add($"{n.Output[0]}_value");
                    break;
                case "Upsample":
                case "Resize" when opset < 11:
                    // Opset 10 resized with asymmetric coordinates and nearest rounding down (ONNX Runtime's Upsample/Resize-10):
                    // Resize 13 says so explicitly. Upsample 7/8 had the scales as an attribute.
                    var mode = n.Attribute.FirstOrDefault(a => a.Name == "mode")?.S.ToStringUtf8() ?? "nearest";
                    if (mode == "bilinear") mode = "linear";
                    if (mode is not ("nearest" or "linear")) throw new ModelToolException($"{g.Source}: {n.OpType} '{n.Name}' with mode '{mode}' cannot be upgraded");
                    var scales = n.Input.Count > 1 ? n.Input[1] : $"{n.Output[0]}_scales";
                    if (n.Attribute.FirstOrDefault(a => a.Name == "scales") is { } sa) inits.Add(OnnxGraph.FloatTensor(scales, [.. sa.Floats], sa.Floats.Count));
                    var x = n.Input[0];
                    n.OpType = "Resize";
                    n.Input.Clear();
                    n.Input.AddRange([x, "", scales]);
                    n.Attribute.Clear();
                    n.Attribute.Add(OnnxGraph.String("mode", mode));
                    n.Attribute.Add(OnnxGraph.String("coordinate_transformation_mode", "asymmetric"));
                    if (mode == "nearest") n.Attribute.Add(OnnxGraph.String("nearest_mode", "floor"));
                    break;
                case "BatchNormalization":
                    if (n.Attribute.FirstOrDefault(a => a.Name == "spatial") is { } spatial)
                    {
                        if (spatial.I != 1) throw new ModelToolException($"{g.Source}: BatchNormalization '{n.Name}' with spatial=0 cannot be upgraded");
                        n.Attribute.Remove(spatial);
                    }

                    break;
                case "Softmax" when OnnxGraph.IntAttribute(n, "axis", 1) != -1:
                    notes.Add($"Softmax '{n.Name}' (opset {opset}, axis {OnnxGraph.IntAttribute(n, "axis", 1)}) is taken to work on the last axis, as on 2-D logits");
                    break;
            }

            foreach (var a in n.Attribute.Where(a => a.Name == "consumed_inputs").ToList()) n.Attribute.Remove(a);
            result.Add(n);
        }

        foreach (var o in graph.Output) if (renamed.ContainsKey(o.Name)) throw new ModelToolException($"{g.Source}: graph output '{o.Name}' comes from a Dropout; cannot remove it");
        graph.Node.Clear();
        graph.Node.AddRange(result);
    }

    /// <summary>Conv → BatchNormalization (constant parameters, the Conv's output used only there) becomes one Conv.</summary>
    public static int FoldBatchNorm(OnnxGraph g, List<string> notes)
    {
        var inits = g.Initializers();
        var consumers = g.Graph.Node.SelectMany(n => n.Input.Select(i => (i, n))).GroupBy(x => x.i).ToDictionary(x => x.Key, x => x.Count());
        var outputs = g.Graph.Output.Select(o => o.Name).ToHashSet();
        var producers = g.Graph.Node.Where(n => n.Output.Count > 0).ToDictionary(n => n.Output[0]);
        var folded = 0;
        foreach (var bn in g.Graph.Node.Where(n => n.OpType == "BatchNormalization").ToList())
        {
            if (!producers.TryGetValue(bn.Input[0], out var conv) || conv.OpType != "Conv" || consumers.GetValueOrDefault(conv.Output[0]) != 1 || outputs.Contains(conv.Output[0])) continue;
            if (!bn.Input.Skip(1).Take(4).All(inits.ContainsKey) || !inits.ContainsKey(conv.Input[1])) continue;
            if (bn.Output.Count > 1 && bn.Output.Skip(1).Any(o => o.Length > 0)) continue; // training outputs
            var scale = OnnxGraph.Floats(inits[bn.Input[1]]);
            var shift = OnnxGraph.Floats(inits[bn.Input[2]]);
            var mean = OnnxGraph.Floats(inits[bn.Input[3]]);
            var variance = OnnxGraph.Floats(inits[bn.Input[4]]);
            var eps = OnnxGraph.FloatAttribute(bn, "epsilon", 1e-5f);
            var wt = inits[conv.Input[1]];
            var w = OnnxGraph.Floats(wt);
            var m = (int)wt.Dims[0];
            var per = w.Length / m;
            var b = conv.Input.Count > 2 && conv.Input[2].Length > 0 && inits.TryGetValue(conv.Input[2], out var bt) ? OnnxGraph.Floats(bt) : new float[m];
            var newW = new float[w.Length];
            var newB = new float[m];
            for (var c = 0; c < m; c++)
            {
                var f = scale[c] / MathF.Sqrt(variance[c] + eps);
                for (var k = 0; k < per; k++) newW[c * per + k] = w[c * per + k] * f;
                newB[c] = (b[c] - mean[c]) * f + shift[c];
            }

            var wName = $"{conv.Input[1]}_bnfolded";
            var bName = $"{conv.Output[0]}_bias_bnfolded";
            g.Graph.Initializer.Add(OnnxGraph.FloatTensor(wName, newW, [.. wt.Dims]));
            g.Graph.Initializer.Add(OnnxGraph.FloatTensor(bName, newB, m));
            conv.Input[1] = wName;
            if (conv.Input.Count > 2) conv.Input[2] = bName;
            else conv.Input.Add(bName);
            conv.Output[0] = bn.Output[0];
            g.Graph.Node.Remove(bn);
            folded++;
        }

        if (folded > 0)
        {
            GraphRewrites.Prune(g);
            notes.Add($"{folded} BatchNormalization folded into the Conv before it");
        }

        return folded;
    }
}
