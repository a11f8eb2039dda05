using EdgeMl.ModelTools.Data;
using EdgeMl.TestUtilities;
using Microsoft.ML.OnnxRuntime.Tensors;
using Onnx;

namespace EdgeMl.ModelTools.Tests;

/// <summary>
/// Models as other people's exporters write them, built in code: weights in external data files, in Constant nodes,
/// inside If branches (read from the outer graph too), float16 weights behind Casts, nodes out of order, int64
/// scalar and bool inputs. Each is quantized, checked from its file by ONNX Runtime and compared with the float model.
/// </summary>
public sealed class ExporterGraphTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static QuantizeOptions Options(string mode = "static") => new() { Mode = mode, AllowSlower = true };

    private string Features(string name, int n, int seed)
    {
        var path = Path.Combine(_dir.Path, name);
        NumPy.Write(path, [n, 16], ModelZoo.Normal(seed, n * 16L));
        return path;
    }

    private string Write(string name, byte[] model)
    {
        var path = Path.Combine(_dir.Path, name);
        File.WriteAllBytes(path, model);
        return path;
    }

    [Fact]
    public void A_model_with_external_data_quantizes_to_real_weights_and_inspect_names_its_data_file()
    {
        var model = OnnxGraph.Parse(ModelZoo.Mlp(13), "mlp");
        var sub = Directory.CreateDirectory(Path.Combine(_dir.Path, "ext"));
        var fp32 = Path.Combine(sub.FullName, "mlp.onnx");
        OnnxGraph.WriteWithExternalData(model.Model, fp32, "mlp_ext.onnx.data", 0);
        Assert.True(new FileInfo(fp32).Length < 1024, "the weights are outside the .onnx");

        var report = Inspector.Inspect(fp32);
        Assert.Equal("mlp_ext.onnx.data", Assert.Single(report.ExternalData.Keys));
        Assert.Equal(model.Graph.Initializer.Sum(OnnxGraph.Elements), report.Parameters);

        var int8 = Path.Combine(_dir.Path, "mlp-int8.onnx");
        var result = Quantizer.Quantize(fp32, Features("cal.npy", 64, 1), Options(), output: int8);
        var q = OnnxGraph.Load(int8);
        var weights = q.Graph.Initializer.Where(t => t.DataType == (int)TensorProto.Types.DataType.Int8 && t.Name.EndsWith("_i8", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, weights.Count);
        Assert.All(weights, w => Assert.Contains(w.RawData.ToByteArray(), b => b != 0)); // not the all-zero weights of a tensor read as empty
        Assert.True(result.Check!.Outputs.All(o => o.Cosine >= 0.99), string.Join(", ", result.Check.Outputs.Select(o => $"{o.Name} {o.Cosine}")));
        var e = Evaluator.Evaluate(fp32, int8, Features("held.npy", 100, 2), new EvaluateOptions());
        Assert.True(e.Outputs[0].Cosine >= 0.99, $"cosine {e.Outputs[0].Cosine}");
        Assert.True(e.ReferenceBytes > 4 * 1024, "the reference's size counts its data file");
    }

    [Fact]
    public void A_tensor_whose_data_cannot_be_read_is_an_error_naming_the_tensor_and_the_file()
    {
        var model = OnnxGraph.Parse(ModelZoo.Mlp(13), "mlp");
        var fp32 = Path.Combine(_dir.Path, "mlp.onnx");
        OnnxGraph.WriteWithExternalData(model.Model, fp32, "weights.bin", 0);
        var first = model.Graph.Initializer[0].Name;

        File.Delete(Path.Combine(_dir.Path, "weights.bin"));
        var e = Assert.Throws<ModelToolException>(() => Quantizer.Quantize(fp32, Features("cal.npy", 8, 1), Options()));
        Assert.Contains($"tensor '{first}'", e.Message, StringComparison.Ordinal);
        Assert.Contains("weights.bin", e.Message, StringComparison.Ordinal);

        File.WriteAllBytes(Path.Combine(_dir.Path, "weights.bin"), new byte[100]); // too short
        e = Assert.Throws<ModelToolException>(() => Inspector.Inspect(fp32));
        Assert.Contains("the file has 100", e.Message, StringComparison.Ordinal);

        // A tensor with a shape and no data at all.
        var empty = OnnxGraph.Parse(ModelZoo.Mlp(13), "mlp").Model;
        empty.Graph.Initializer[0].RawData = Google.Protobuf.ByteString.Empty;
        var path = Write("empty.onnx", Google.Protobuf.MessageExtensions.ToByteArray(empty));
        e = Assert.Throws<ModelToolException>(() => Quantizer.Quantize(path, Features("cal2.npy", 8, 1), Options()));
        Assert.Contains($"{path}: tensor '{first}'", e.Message, StringComparison.Ordinal);
        Assert.Contains("has no data", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_model_over_the_size_limit_is_written_with_external_data_that_onnx_runtime_loads()
    {
        var g = OnnxGraph.Parse(ModelZoo.Mlp(13), "mlp");
        var path = Path.Combine(_dir.Path, "big.onnx");
        g.Save(path, externalAbove: 1000); // as if 1,000 bytes were protobuf's limit
        Assert.True(File.Exists(path + ".data"));
        var again = OnnxGraph.Load(path);
        Assert.Equal(g.Graph.Initializer.Count(t => t.RawData.Length >= 1024), again.ExternalTensors);
        Assert.True(again.ExternalTensors >= 2);
        using var options = new Microsoft.ML.OnnxRuntime.SessionOptions();
        using var session = again.OpenSession(options);
        using var x = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(ModelZoo.Normal(3, 16), [1, 16]);
        using var run = new Microsoft.ML.OnnxRuntime.RunOptions();
        using var y = session.Run(run, ["features"], [x], ["logits"]);
        Assert.Contains(y[0].GetTensorDataAsSpan<float>().ToArray(), v => v != 0);
    }

    [Fact]
    public void Constant_node_weights_are_folded_and_nodes_out_of_order_are_sorted()
    {
        var fp32 = Write("const.onnx", ExporterStyle.ConstantWeights(ModelZoo.ConvNet(11), reversed: true));
        var result = Quantizer.Quantize(fp32, ConvImages("img.npy", 32, 1), Options());
        Assert.True(result.Weights >= 6, $"{result.Weights} weights");
        Assert.Contains(result.Notes, n => n.Contains("Constant node(s) folded", StringComparison.Ordinal));
        Assert.All(result.Check!.Outputs, o => Assert.True(o.Cosine >= 0.98, $"{o.Name} {o.Cosine}"));
        var q = OnnxGraph.Parse(result.Model, "q");
        var seen = q.RealInputs().Select(i => i.Name).Concat(q.Graph.Initializer.Select(t => t.Name)).ToHashSet();
        foreach (var n in q.Graph.Node)
        {
            Assert.All(n.Input.Where(i => i.Length > 0), i => Assert.Contains(i, seen));
            foreach (var o in n.Output) seen.Add(o);
        }

        var report = Inspector.Inspect(fp32);
        Assert.True(report.Parameters > 1000, $"Constant-node weights count as parameters: {report.Parameters}");
    }

    private string ConvImages(string name, int n, int seed)
    {
        var path = Path.Combine(_dir.Path, name);
        NumPy.Write(path, [n, 3, 16, 16], ModelZoo.Normal(seed, n * 3L * 16 * 16));
        return path;
    }

    [Theory]
    [InlineData("static")]
    [InlineData("dynamic")]
    public void Weights_inside_if_branches_are_quantized_and_an_int64_scalar_input_is_given_once(string mode)
    {
        var fp32 = Write("if.onnx", ExporterStyle.IfOnSampleRate(ModelZoo.Mlp(13, seed: 1), ModelZoo.Mlp(13, seed: 2)));
        var data = Path.Combine(_dir.Path, "if.npz");
        NumPy.WriteNpz(data, [("features", [64, 16], ModelZoo.Normal(5, 64 * 16)), ("sr", [], new long[] { 16000 })]);

        var report = Inspector.Inspect(fp32);
        Assert.True(report.Nodes > 10, $"nodes inside the branches count: {report.Nodes}");
        Assert.True(report.Parameters > 1000, $"{report.Parameters}");

        var int8 = Path.Combine(_dir.Path, $"if-{mode}.onnx");
        var result = Quantizer.Quantize(fp32, data, Options(mode), output: int8);
        var q = OnnxGraph.Load(int8);
        var inBranches = q.Graphs().Skip(1).SelectMany(g => g.Node).Select(n => n.OpType).ToList();
        Assert.Contains(mode == "static" ? "DequantizeLinear" : "MatMulInteger", inBranches);
        Assert.DoesNotContain(q.Graphs().SelectMany(g => g.Initializer), t => t.DataType == (int)TensorProto.Types.DataType.Float && OnnxGraph.Elements(t) >= 16 * 32);
        var e = Evaluator.Evaluate(fp32, int8, data, new EvaluateOptions());
        Assert.True(e.Outputs[0].Cosine >= 0.99, $"cosine {e.Outputs[0].Cosine}");
        Assert.True(e.SizeRatio < 1, $"size ratio {e.SizeRatio}");
        Assert.True(result.QuantizedNodes + result.WeightOnlyNodes >= 6, $"{result.QuantizedNodes} + {result.WeightOnlyNodes}");
    }

    [Fact]
    public void An_lstm_inside_an_if_branch_gets_int8_weights()
    {
        var fp32 = Write("if-lstm.onnx", ExporterStyle.IfOnSampleRate(ModelZoo.Recurrent("LSTM", 13, seed: 4), ModelZoo.Recurrent("LSTM", 13, seed: 5)));
        var data = Path.Combine(_dir.Path, "lstm.npz");
        NumPy.WriteNpz(data, [("x", [16, 10, 1, 6], ModelZoo.Normal(6, 16 * 60)), ("sr", [], new long[] { 8000 })]);
        var result = Quantizer.Quantize(fp32, data, Options());
        Assert.True(result.WeightOnlyNodes >= 2, $"{result.WeightOnlyNodes}");
        Assert.All(result.Check!.Outputs, o => Assert.True(o.Cosine >= 0.99, $"{o.Name} {o.Cosine}"));
    }

    [Fact]
    public void Float16_weights_behind_casts_are_quantized_and_a_float16_model_is_refused_saying_so()
    {
        var fp16 = Write("fp16.onnx", ExporterStyle.Float16Weights(ModelZoo.Mlp(13)));
        var result = Quantizer.Quantize(fp16, Features("cal.npy", 32, 1), Options());
        Assert.Contains(result.Notes, n => n.Contains("float16 weight(s)", StringComparison.Ordinal));
        Assert.Equal(3, result.Weights);

        var computes = Write("fp16-compute.onnx", ExporterStyle.Float16Computation(ModelZoo.Mlp(13)));
        var e = Assert.Throws<ModelToolException>(() => Quantizer.Quantize(computes, Features("cal.npy", 32, 1), Options()));
        Assert.True(e.Message.Contains("computes in float16", StringComparison.Ordinal), e.Message);
        Assert.Contains("convert it to float32 first", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_result_below_the_cosine_bound_is_not_written_and_the_error_says_why()
    {
        var fp32 = Write("mlp.onnx", ModelZoo.Mlp(13));
        var output = Path.Combine(_dir.Path, "never.onnx");
        var options = Options();
        options.MinCosine = 0.9999999;
        options.MaxFloatLayers = 1;
        var e = Assert.Throws<ModelToolException>(() => Quantizer.Quantize(fp32, Features("cal.npy", 16, 1), options, output: output));
        Assert.Contains("bound 0.9999999", e.Message, StringComparison.Ordinal);
        Assert.Contains("nothing written", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFiles(_dir.Path, "*.tmp"));
    }

    /// <summary>The MLP with one Gemm weight an outlier 100× its largest: per-tensor int8 rounds the rest of that layer to zero.</summary>
    private (string Path, string Gemm) OutlierMlp()
    {
        var m = OnnxGraph.Parse(ModelZoo.Mlp(13), "mlp");
        var gemm = m.Graph.Node.First(n => n.OpType == "Gemm");
        var w = m.Graph.Initializer.First(t => t.Name == gemm.Input[1]);
        var values = OnnxGraph.Floats(w);
        values[0] = 100 * values.Max(Math.Abs);
        w.RawData = Google.Protobuf.ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        w.FloatData.Clear();
        return (Write("outlier.onnx", Google.Protobuf.MessageExtensions.ToByteArray(m.Model)), gemm.Name);
    }

    [Fact]
    public void The_sensitivity_search_keeps_the_most_damaging_layer_in_float_to_reach_the_bound()
    {
        var (fp32, gemm) = OutlierMlp();
        var options = new QuantizeOptions { AllowSlower = true, PerChannel = false, MinCosine = 0.99 };
        var result = Quantizer.Quantize(fp32, Features("cal.npy", 32, 1), options);
        Assert.Equal(gemm, result.KeptFloat.Keys.First()); // the outlier layer is found first
        Assert.All(result.KeptFloat.Values, why => Assert.StartsWith("accuracy", why, StringComparison.Ordinal));
        Assert.True(result.KeptFloat.Count < 3, string.Join(", ", result.KeptFloat.Keys));
        Assert.True(result.Check!.Outputs.Min(o => o.Cosine) >= 0.99);
    }

    [Fact]
    public void A_maximum_accuracy_drop_on_labelled_calibration_data_drives_the_same_search()
    {
        var (fp32, gemm) = OutlierMlp();
        var calibration = Features("cal.npy", 200, 1);
        // Labels: the float model's own classes, so fp32 is 100 % right and any int8 flip is a drop.
        using var options = new Microsoft.ML.OnnxRuntime.SessionOptions();
        using var session = OnnxGraph.OpenSession(fp32, options, "fp32");
        var x = NumPy.Load(calibration).Values.First().Data;
        var labels = Enumerable.Range(0, 200).Select(k =>
        {
            using var v = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(x.AsSpan(k * 16, 16).ToArray(), [1, 16]);
            using var run = new Microsoft.ML.OnnxRuntime.RunOptions();
            using var r = session.Run(run, ["features"], [v], ["logits"]);
            var logits = r[0].GetTensorDataAsSpan<float>().ToArray();
            return (float)Array.IndexOf(logits, logits.Max());
        }).ToArray();
        var labelsPath = Path.Combine(_dir.Path, "labels.npy");
        NumPy.Write(labelsPath, [200], labels);

        var plain = Quantizer.Quantize(fp32, calibration, new QuantizeOptions { AllowSlower = true, PerChannel = false, MinCosine = 0, Labels = labelsPath });
        var before = plain.Check!.AccuracyDropPoints!.Value;
        Assert.True(before > 10, $"without the search: drop {before}");
        var bound = before / 2;
        var result = Quantizer.Quantize(fp32, calibration, new QuantizeOptions { AllowSlower = true, PerChannel = false, MinCosine = 0, Labels = labelsPath, MaxAccuracyDrop = bound });
        Assert.Equal(gemm, result.KeptFloat.Keys.First());
        Assert.True(result.Check!.AccuracyDropPoints <= bound, $"drop {result.Check.AccuracyDropPoints}, before {before}");
        var e = Assert.Throws<ModelToolException>(() => Quantizer.Quantize(fp32, calibration, new QuantizeOptions { AllowSlower = true, MaxAccuracyDrop = 1 }));
        Assert.Contains("needs --calibration data and --labels", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_channel_with_tiny_weights_and_a_large_bias_keeps_its_bias()
    {
        // BatchNorm folded into a near-dead channel: weights ~1e-9, bias 3. At input scale × weight scale the bias would
        // pass int32 and be clipped to almost nothing; the weight scale is raised instead.
        var m = OnnxGraph.Parse(ModelZoo.Mlp(13), "mlp");
        var gemm = m.Graph.Node.First(n => n.OpType == "Gemm");
        var w = m.Graph.Initializer.First(t => t.Name == gemm.Input[1]);
        var b = m.Graph.Initializer.First(t => t.Name == gemm.Input[2]);
        var wv = OnnxGraph.Floats(w);
        for (var k = 0; k < 16; k++) wv[k] *= 1e-9f; // row 0 of [32, 16] (transB)
        var bv = OnnxGraph.Floats(b);
        bv[0] = 3;
        w.RawData = Google.Protobuf.ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(wv.AsSpan()));
        b.RawData = Google.Protobuf.ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(bv.AsSpan()));
        w.FloatData.Clear();
        b.FloatData.Clear();
        var fp32 = Write("dead-channel.onnx", Google.Protobuf.MessageExtensions.ToByteArray(m.Model));
        var int8 = Path.Combine(_dir.Path, "dead-channel-int8.onnx");
        var options = Options();
        options.MinCosine = 0; // no layer kept in float: the channel itself is checked
        Quantizer.Quantize(fp32, Features("cal.npy", 32, 1), options, output: int8);
        var e = Evaluator.Evaluate(fp32, int8, Features("held.npy", 64, 2), new EvaluateOptions());
        Assert.True(e.Outputs[0].MaxAbsError < 0.5, $"max |error| {e.Outputs[0].MaxAbsError}, cosine {e.Outputs[0].Cosine}");
    }

    [Fact]
    public void Npz_inputs_keep_their_dtype_and_a_one_sample_array_is_used_for_every_sample()
    {
        var npz = Path.Combine(_dir.Path, "typed.npz");
        NumPy.WriteNpz(npz, [
            ("x", [5, 1, 3], new float[15]), ("ids", [5, 4], Enumerable.Range(0, 20).Select(i => (long)i << 40).ToArray()),
            ("mask", [5, 4], Enumerable.Range(0, 20).Select(i => i % 2 == 0).ToArray()), ("half", [5, 2], Enumerable.Range(0, 10).Select(i => (Half)i).ToArray()),
            ("count", [], new[] { 7 }),
        ]);
        var samples = SampleSet.Load(npz, [
            new ModelInput("x", [1, -1, 3]), new ModelInput("ids", [-1, 4], TensorElementType.Int64), new ModelInput("mask", [1, 4], TensorElementType.Bool),
            new ModelInput("half", [1, 2], TensorElementType.Float16), new ModelInput("count", [], TensorElementType.Int32),
        ], null, 100);
        Assert.Equal(5, samples.Count);
        Assert.Equal([1L, 1, 3], samples[0].Inputs["x"].Shape);
        Assert.Equal(6L << 40, ((long[])samples[1].Inputs["ids"].Data)[2]); // exact beyond float32's 24 bits
        Assert.Equal([true, false, true, false], (bool[])samples[1].Inputs["mask"].Data);
        Assert.Equal((Microsoft.ML.OnnxRuntime.Float16)3f, ((Microsoft.ML.OnnxRuntime.Float16[])samples[1].Inputs["half"].Data)[1]);
        Assert.All(samples, s => Assert.Equal(7, ((int[])s.Inputs["count"].Data)[0]));
        Assert.Empty(samples[0].Inputs["count"].Shape);
    }
}
