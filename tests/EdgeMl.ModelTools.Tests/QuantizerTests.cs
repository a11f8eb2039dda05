using System.IO.Compression;
using EdgeMl.ModelTools.Data;
using EdgeMl.TestUtilities;
using Onnx;

namespace EdgeMl.ModelTools.Tests;

/// <summary>
/// Static (QDQ) and dynamic int8 quantization of models nobody here tuned for it: an MLP, a ResNet/MobileNet-style
/// conv net (BatchNorm, residual Add, depthwise conv), a 1-D conv net, LSTM and GRU with state inputs and outputs,
/// at opsets 11 to 21. Each result is loaded and run by ONNX Runtime and compared with the float model on held-out
/// data it was not calibrated on.
/// </summary>
public sealed class QuantizerTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public static TheoryData<string, int, string> Cases()
    {
        var data = new TheoryData<string, int, string>();
        foreach (var kind in new[] { "mlp", "convnet", "conv1d", "lstm", "gru" })
        {
            foreach (var opset in new[] { 11, 13, 17, 21 })
            {
                data.Add(kind, opset, "static");
                data.Add(kind, opset, "dynamic"); // conv nets: only their Gemm (dynamic has no int8 conv)
            }
        }

        return data;
    }

    private static byte[] Build(string kind, int opset) => kind switch
    {
        "mlp" => ModelZoo.Mlp(opset),
        "convnet" => ModelZoo.ConvNet(opset),
        "conv1d" => ModelZoo.Conv1d(opset),
        "lstm" => ModelZoo.Recurrent("LSTM", opset),
        _ => ModelZoo.Recurrent("GRU", opset),
    };

    private static long[] InputShape(string kind) => kind switch
    {
        "mlp" => [1, 16],
        "convnet" => [1, 3, 16, 16],
        "conv1d" => [1, 3, 64],
        _ => [10, 1, 6],
    };

    /// <summary>N samples for the model's first input: (N, rest) for batch-first inputs, (N, full shape) for the recurrent one.</summary>
    private string Data(string kind, int seed, int n)
    {
        var shape = InputShape(kind);
        var perSample = shape.Aggregate(1L, (a, b) => a * b);
        var path = Path.Combine(_dir.Path, $"{kind}-{seed}.npy");
        long[] fileShape = kind is "lstm" or "gru" ? [n, .. shape] : [n, .. shape[1..]];
        NumPy.Write(path, fileShape, ModelZoo.Normal(seed, n * perSample));
        return path;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_model_kind_quantizes_loads_in_onnx_runtime_and_agrees_with_fp32(string kind, int opset, string mode)
    {
        var fp32 = Path.Combine(_dir.Path, $"{kind}-{opset}.onnx");
        File.WriteAllBytes(fp32, Build(kind, opset));
        var result = Quantizer.Quantize(fp32, mode == "static" ? Data(kind, 100, 64) : null, new QuantizeOptions { AllowSlower = true, Mode = mode });
        var int8 = Path.Combine(_dir.Path, $"{kind}-{opset}-{mode}.onnx");
        File.WriteAllBytes(int8, result.Model);

        Assert.True(result.Weights > 0);
        Assert.True(result.OpsetOut >= 13);
        if (kind is "lstm" or "gru") Assert.Equal(1, result.WeightOnlyNodes);
        if (mode == "static" && kind is not ("lstm" or "gru")) Assert.True(result.Activations >= 4, $"{result.Activations} activations");
        var quantized = OnnxGraph.Parse(result.Model, int8);
        Assert.Contains(mode == "static" ? "DequantizeLinear" : "MatMulInteger", quantized.Graph.Node.Select(n => n.OpType));
        if (mode == "static")
        {
            // Every Conv, MatMul and Gemm reads only dequantized tensors: its activations and its weights (and bias).
            var producers = quantized.Graph.Node.SelectMany(n => n.Output.Select(o => (o, n.OpType))).ToDictionary(x => x.o, x => x.OpType);
            foreach (var n in quantized.Graph.Node.Where(n => n.OpType is "Conv" or "MatMul" or "Gemm"))
            {
                Assert.All(n.Input.Where(i => i.Length > 0), i => Assert.True(producers.GetValueOrDefault(i) == "DequantizeLinear", $"{n.OpType} {n.Name} input {i} comes from {producers.GetValueOrDefault(i) ?? "an initializer or graph input"}"));
                Assert.Equal("QuantizeLinear", quantized.Graph.Node.First(c => c.Input.Contains(n.Output[0])).OpType);
            }
        }
        Assert.Contains(quantized.Graph.Initializer, t => t.DataType == (int)TensorProto.Types.DataType.Int8);

        // Held-out data (another seed), never seen by the calibration.
        var e = Evaluator.Evaluate(fp32, int8, Data(kind, 200, 200), new EvaluateOptions());
        Assert.Equal(200, e.Samples);
        var logits = e.Outputs.Single(o => o.Name == "logits");
        // Tolerances: int8 weights and activations on random-weight nets (no training to make them robust).
        Assert.True(logits.Cosine >= 0.98, $"{kind}/{opset}/{mode}: cosine {logits.Cosine}");
        Assert.True(logits.Top1Agreement >= 0.85, $"{kind}/{opset}/{mode}: top-1 agreement {logits.Top1Agreement}");
        if (kind is "lstm" or "gru")
        {
            var state = e.Outputs.Single(o => o.Name == "h1");
            Assert.True(state.Cosine >= 0.98, $"{kind}: state cosine {state.Cosine}");
        }
    }

    [Theory]
    [InlineData("minmax", "uint8", false)]
    [InlineData("percentile", "uint8", false)]
    [InlineData("entropy", "uint8", false)]
    [InlineData("entropy", "int8", false)]
    [InlineData("minmax", "int8", true)]
    public void Every_calibration_method_and_activation_type_gives_a_model_that_agrees(string method, string activations, bool perTensor)
    {
        var fp32 = Path.Combine(_dir.Path, "convnet.onnx");
        File.WriteAllBytes(fp32, ModelZoo.ConvNet(17));
        var options = new QuantizeOptions
        {
            AllowSlower = true, MinCosine = 0.97, Method = Enum.Parse<CalibrationMethod>(method, ignoreCase: true), ActivationType = activations, PerChannel = !perTensor,
        };
        var result = Quantizer.Quantize(fp32, Data("convnet", 100, 64), options);
        var int8 = Path.Combine(_dir.Path, $"convnet-{method}-{activations}.onnx");
        File.WriteAllBytes(int8, result.Model);
        var q = OnnxGraph.Parse(result.Model, int8);
        var zeroPoint = q.Initializers()[q.Graph.Node.First(n => n.OpType == "QuantizeLinear").Input[2]];
        Assert.Equal(activations == "int8" ? (int)TensorProto.Types.DataType.Int8 : (int)TensorProto.Types.DataType.Uint8, zeroPoint.DataType);
        var inits = q.Initializers();
        var weightScales = q.Graph.Node.Where(n => n.OpType == "DequantizeLinear" && inits.TryGetValue(n.Input[0], out var w) && w.DataType == (int)TensorProto.Types.DataType.Int8)
            .Select(n => OnnxGraph.Elements(inits[n.Input[1]])).ToList();
        Assert.Equal(6, weightScales.Count); // five Conv weights and the Gemm's
        Assert.Equal(perTensor, weightScales.All(n => n == 1));
        var e = Evaluator.Evaluate(fp32, int8, Data("convnet", 200, 200), new EvaluateOptions());
        var mm = Quantizer.Quantize(fp32, Data("convnet", 100, 64), new QuantizeOptions { AllowSlower = true }); // min/max ranges, to show beside these if it fails
        Assert.True(e.Outputs[0].Cosine >= 0.97, $"{method}/{activations}: cosine {e.Outputs[0].Cosine} " + string.Join("; ", result.Ranges.Select(kv => $"{kv.Key}: {kv.Value[0]:0.###}..{kv.Value[1]:0.###} vs {mm.Ranges[kv.Key][0]:0.###}..{mm.Ranges[kv.Key][1]:0.###}")));
    }

    [Fact]
    public void Per_channel_weight_scales_are_max_abs_over_127_for_each_output_channel_and_on_the_right_axis()
    {
        var fp32 = Path.Combine(_dir.Path, "conv.onnx");
        File.WriteAllBytes(fp32, ModelZoo.ConvNet(13));
        var original = OnnxGraph.Load(fp32);
        var q = OnnxGraph.Parse(Quantizer.Quantize(fp32, Data("convnet", 7, 32), new QuantizeOptions { AllowSlower = true }).Model, "q");
        var qInit = q.Initializers();

        // The second Conv (8 → 8, 3×3, no BatchNorm after it): weight [8, 8, 3, 3].
        var conv = original.Graph.Node.Where(n => n.OpType == "Conv").ElementAt(1);
        var wt = original.Initializers()[conv.Input[1]];
        var w = OnnxGraph.Floats(wt);
        var scale = OnnxGraph.Floats(qInit[$"{wt.Name}_s"]);
        var quantizedWeight = qInit[$"{wt.Name}_i8"];
        Assert.Equal(8, scale.Length);
        Assert.Equal((int)TensorProto.Types.DataType.Int8, quantizedWeight.DataType);
        var qv = quantizedWeight.RawData.ToByteArray().Select(b => (sbyte)b).ToArray();
        for (var c = 0; c < 8; c++)
        {
            var maxAbs = w.Skip(c * 72).Take(72).Max(Math.Abs);
            Assert.Equal(maxAbs / 127f, scale[c], 6);
            for (var k = 0; k < 72; k++)
            {
                Assert.True(Math.Abs(qv[c * 72 + k] * scale[c] - w[c * 72 + k]) <= scale[c] / 2 + 1e-6, $"channel {c} element {k}");
            }

            Assert.Contains(qv.Skip(c * 72).Take(72), v => Math.Abs((int)v) == 127); // the largest weight maps to ±127
        }

        var dq = q.Graph.Node.Single(n => n.OpType == "DequantizeLinear" && n.Input[0] == $"{wt.Name}_i8");
        Assert.Equal(0, OnnxGraph.IntAttribute(dq, "axis", -1));

        // MLP: Gemm with transB=1 has its output channels on axis 0; MatMul [K, N] on axis 1.
        var mlp = Path.Combine(_dir.Path, "mlp.onnx");
        File.WriteAllBytes(mlp, ModelZoo.Mlp(13));
        var mq = OnnxGraph.Parse(Quantizer.Quantize(mlp, Data("mlp", 7, 32), new QuantizeOptions { AllowSlower = true }).Model, "q");
        var gemmDq = mq.Graph.Node.First(n => n.OpType == "DequantizeLinear" && mq.Initializers()[n.Input[0]].Dims.SequenceEqual(new long[] { 32, 16 }));
        Assert.Equal(0, OnnxGraph.IntAttribute(gemmDq, "axis", -1));
        var matmulDq = mq.Graph.Node.First(n => n.OpType == "DequantizeLinear" && mq.Initializers()[n.Input[0]].Dims.SequenceEqual(new long[] { 32, 24 }));
        Assert.Equal(1, OnnxGraph.IntAttribute(matmulDq, "axis", -1));
        Assert.Equal(24, OnnxGraph.Elements(mq.Initializers()[matmulDq.Input[1]]));
    }

    [Fact]
    public void Bad_inputs_get_a_clear_error_and_no_file()
    {
        var fp32 = Path.Combine(_dir.Path, "mlp.onnx");
        File.WriteAllBytes(fp32, ModelZoo.Mlp(13));
        var calibration = Data("mlp", 1, 16);

        // Already quantized.
        var int8 = Path.Combine(_dir.Path, "mlp-int8.onnx");
        File.WriteAllBytes(int8, Quantizer.Quantize(fp32, calibration, new QuantizeOptions { AllowSlower = true }).Model);
        var e = Assert.Throws<ModelToolException>(() => Quantizer.Quantize(int8, calibration, new QuantizeOptions { AllowSlower = true }));
        Assert.Contains("already quantized", e.Message, StringComparison.Ordinal);

        // Nothing quantizable: Relu and Add only.
        var plain = new OnnxModelBuilder().Input("x", 1, 16).Output("y", 1, 16).Node("Relu", ["x"], ["r"]).Node("Add", ["r", "x"], ["y"]).Build(13);
        var plainPath = Path.Combine(_dir.Path, "plain.onnx");
        File.WriteAllBytes(plainPath, plain);
        e = Assert.Throws<ModelToolException>(() => Quantizer.Quantize(plainPath, calibration, new QuantizeOptions { AllowSlower = true }));
        Assert.Contains("nothing to quantize", e.Message, StringComparison.Ordinal);
        Assert.Contains("Relu, Add", e.Message, StringComparison.Ordinal);

        // A corrupt file.
        var corrupt = Path.Combine(_dir.Path, "corrupt.onnx");
        var bytes = ModelZoo.Mlp(13);
        File.WriteAllBytes(corrupt, bytes.AsSpan(0, bytes.Length / 3).ToArray().Concat(new byte[] { 0xff, 0xff, 0xff, 0xff, 0x0f }).ToArray());
        e = Assert.Throws<ModelToolException>(() => Quantizer.Quantize(corrupt, calibration, new QuantizeOptions { AllowSlower = true }));
        Assert.Contains("corrupt.onnx is not an ONNX model", e.Message, StringComparison.Ordinal);

        // Calibration data of the wrong shape: 20 features for an input of 16.
        var wrong = Path.Combine(_dir.Path, "wrong.npy");
        NumPy.Write(wrong, [8, 20], new float[160]);
        e = Assert.Throws<ModelToolException>(() => Quantizer.Quantize(fp32, wrong, new QuantizeOptions { AllowSlower = true }));
        Assert.Contains("has shape (8, 20)", e.Message, StringComparison.Ordinal);
        Assert.Contains("'features' [1, 16]", e.Message, StringComparison.Ordinal);

        // An excluded node that does not exist; an unknown op on an old opset.
        e = Assert.Throws<ModelToolException>(() => Quantizer.Quantize(fp32, calibration, new QuantizeOptions { AllowSlower = true, Exclude = ["gemm_99"] }));
        Assert.Contains("--exclude gemm_99: no node of that name", e.Message, StringComparison.Ordinal);
        var old = new OnnxModelBuilder().Input("x", 1, 4, 8, 8).Output("y", 1, 1, 16, 16).Node("DepthToSpace", ["x"], ["y"], ("blocksize", 2)).Build(9);
        var oldPath = Path.Combine(_dir.Path, "old.onnx");
        File.WriteAllBytes(oldPath, old);
        e = Assert.Throws<ModelToolException>(() => Quantizer.Quantize(oldPath, null, new QuantizeOptions { AllowSlower = true }));
        Assert.Contains("opset 9", e.Message, StringComparison.Ordinal);
        Assert.Contains("DepthToSpace", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_npz_feeds_every_input_by_name_and_an_array_that_matches_no_input_is_an_error()
    {
        var fp32 = Path.Combine(_dir.Path, "lstm.onnx");
        File.WriteAllBytes(fp32, ModelZoo.Recurrent("LSTM", 17));
        var npz = Path.Combine(_dir.Path, "calib.npz");
        var parts = new[] { ("x", new long[] { 32, 10, 1, 6 }), ("h0", new long[] { 32, 1, 1, 12 }), ("c0", new long[] { 32, 1, 1, 12 }) };
        using (var zip = System.IO.Compression.ZipFile.Open(npz, System.IO.Compression.ZipArchiveMode.Create))
        {
            var seed = 1;
            foreach (var (name, shape) in parts)
            {
                var tmp = Path.Combine(_dir.Path, $"{name}.npy");
                NumPy.Write(tmp, shape, ModelZoo.Normal(seed++, shape.Aggregate(1L, (a, b) => a * b), 0.5f));
                zip.CreateEntryFromFile(tmp, $"{name}.npy");
            }
        }

        var notes = new List<string>();
        var samples = SampleSet.Load(npz, [new ModelInput("x", [10, 1, 6]), new ModelInput("h0", [1, 1, 12]), new ModelInput("c0", [1, 1, 12])], null, 100, notes);
        Assert.Equal(32, samples.Count);
        Assert.Empty(notes); // nothing zero-filled: every input had its array
        Assert.Equal([1L, 1, 12], samples[5].Inputs["c0"].Shape);
        var result = Quantizer.Quantize(fp32, npz, new QuantizeOptions { AllowSlower = true });
        Assert.Equal(32, result.CalibrationSamples);

        var wrong = Path.Combine(_dir.Path, "wrong.npz");
        using (var zip = System.IO.Compression.ZipFile.Open(wrong, System.IO.Compression.ZipArchiveMode.Create))
        {
            zip.CreateEntryFromFile(Path.Combine(_dir.Path, "x.npy"), "x.npy");
            zip.CreateEntryFromFile(Path.Combine(_dir.Path, "h0.npy"), "hidden.npy");
        }

        var e = Assert.Throws<ModelToolException>(() => Quantizer.Quantize(fp32, wrong, new QuantizeOptions { AllowSlower = true }));
        Assert.Contains("array 'hidden' matches no model input (inputs: x, h0, c0)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_conv_read_by_float_ops_runs_as_an_int8_kernel_and_no_qdq_pair_sits_between_two_float_ops()
    {
        var fp32 = Path.Combine(_dir.Path, "hardswish.onnx");
        File.WriteAllBytes(fp32, ModelZoo.HardSwishNet());
        var source = OnnxGraph.Load(fp32);
        var firstConv = source.Graph.Node.First(n => n.OpType == "Conv").Output[0];
        var plusThree = source.Graph.Node.Single(n => n.OpType == "Add").Output[0];
        var clip = source.Graph.Node.Single(n => n.OpType == "Clip").Output[0];
        var result = Quantizer.Quantize(fp32, Data("convnet", 1, 16), new QuantizeOptions { AllowSlower = true, MinCosine = 0.98 });
        var q = OnnxGraph.Parse(result.Model, "q");

        // The hard-swish reads the dequantized Conv output: only the QuantizeLinear reads the Conv's own output.
        Assert.All(q.Graph.Node.Where(n => n.Input.Contains(firstConv)), n => Assert.Equal("QuantizeLinear", n.OpType));
        // x + 3 and its Clip run in float between float ops: no requantization of their outputs.
        Assert.DoesNotContain(q.Graph.Node, n => n.OpType == "QuantizeLinear" && (n.Input[0] == plusThree || n.Input[0] == clip));

        // ONNX Runtime fuses both convs into QLinearConv (before, the hard-swish kept the first one in float).
        var optimized = Path.Combine(_dir.Path, "hardswish.ort.onnx");
        var path = Path.Combine(_dir.Path, "hardswish.int8.onnx");
        File.WriteAllBytes(path, result.Model);
        using (var options = new Microsoft.ML.OnnxRuntime.SessionOptions { GraphOptimizationLevel = Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, OptimizedModelFilePath = optimized })
        using (new Microsoft.ML.OnnxRuntime.InferenceSession(path, options))
        {
        }

        var ops = OnnxGraph.Load(optimized).Graph.Node.Select(n => n.OpType).ToList();
        Assert.Equal(2, ops.Count(o => o == "QLinearConv"));
        Assert.DoesNotContain("Conv", ops);
        Assert.True(result.Check!.Outputs.Min(o => o.Cosine) >= 0.98);
    }

    [Fact]
    public void Excluded_nodes_stay_in_float()
    {
        var fp32 = Path.Combine(_dir.Path, "mlp.onnx");
        File.WriteAllBytes(fp32, ModelZoo.Mlp(13));
        var last = OnnxGraph.Load(fp32).Graph.Node.Last(n => n.OpType == "Gemm").Name;
        var q = OnnxGraph.Parse(Quantizer.Quantize(fp32, Data("mlp", 1, 16), new QuantizeOptions { AllowSlower = true, Exclude = [last] }).Model, "q");
        var node = q.Graph.Node.Single(n => n.Name == last);
        var inits = q.Initializers();
        Assert.Equal((int)TensorProto.Types.DataType.Float, inits[node.Input[1]].DataType); // its weight is the float original
        Assert.DoesNotContain(q.Graph.Node, n => n.OpType == "DequantizeLinear" && n.Output[0] == node.Input[0]); // its input is not dequantized
    }

    [Fact]
    public void An_opset_9_model_with_batchnorm_dropout_and_clip_is_upgraded_to_13_and_quantized()
    {
        // Conv → BatchNormalization → Clip(attributes, as before opset 11) → Dropout → GlobalAveragePool → Flatten → Gemm.
        var b = new OnnxModelBuilder().Input("x", 1, 2, 8, 8).Output("y", 1, 3)
            .Constant("w", [4, 2, 3, 3], ModelZoo.Normal(1, 72, 0.3f))
            .Constant("s", [4], 1, 1.1f, 0.9f, 1).Constant("b", [4], 0, 0.1f, -0.1f, 0).Constant("m", [4], 0.1f, 0, 0, -0.1f).Constant("v", [4], 1, 1.2f, 0.8f, 1)
            .Constant("g", [3, 4], ModelZoo.Normal(2, 12, 0.5f)).Constant("gb", [3], 0, 0, 0)
            .Node("Conv", ["x", "w"], ["c"], "kernel_shape", [3, 3])
            .Node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"])
            .Node("Clip", ["n"], ["r"])
            .Node("Dropout", ["r"], ["d"])
            .Node("GlobalAveragePool", ["d"], ["p"])
            .Node("Flatten", ["p"], ["f"])
            .Node("Gemm", ["f", "g", "gb"], ["y"], ("transB", 1));
        var bytes = b.Build(9);
        var model = Onnx.ModelProto.Parser.ParseFrom(bytes);
        var clip = model.Graph.Node.Single(n => n.OpType == "Clip");
        clip.Attribute.Add(new AttributeProto { Name = "min", Type = AttributeProto.Types.AttributeType.Float, F = 0 });
        clip.Attribute.Add(new AttributeProto { Name = "max", Type = AttributeProto.Types.AttributeType.Float, F = 6 });
        var path = Path.Combine(_dir.Path, "old9.onnx");
        File.WriteAllBytes(path, Google.Protobuf.MessageExtensions.ToByteArray(model));
        var data = Path.Combine(_dir.Path, "old9.npy");
        NumPy.Write(data, [64, 2, 8, 8], ModelZoo.Normal(3, 64 * 128));

        var result = Quantizer.Quantize(path, data, new QuantizeOptions { AllowSlower = true });
        Assert.Equal(9, result.OpsetIn);
        Assert.Equal(13, result.OpsetOut);
        Assert.Contains(result.Notes, n => n.Contains("BatchNormalization folded", StringComparison.Ordinal));
        Assert.Contains(result.Notes, n => n.Contains("opset 9 upgraded to 13", StringComparison.Ordinal));
        var q = OnnxGraph.Parse(result.Model, "q");
        Assert.DoesNotContain(q.Graph.Node, n => n.OpType is "BatchNormalization" or "Dropout");
        Assert.Equal(3, q.Graph.Node.Single(n => n.OpType == "Clip").Input.Count); // min and max are inputs now
        var int8 = Path.Combine(_dir.Path, "old9-int8.onnx");
        File.WriteAllBytes(int8, result.Model);
        var e = Evaluator.Evaluate(path, int8, data, new EvaluateOptions());
        Assert.True(e.Outputs[0].Cosine >= 0.98, $"cosine {e.Outputs[0].Cosine}");
    }

    public void Dispose() => _dir.Dispose();
}
