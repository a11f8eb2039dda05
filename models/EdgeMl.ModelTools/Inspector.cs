using Onnx;

namespace EdgeMl.ModelTools;

/// <summary><c>edgeml model inspect</c>: what an ONNX model (or the model in a package) is.</summary>
public static class Inspector
{
    public static ModelReport Inspect(string path)
    {
        var g = OnnxGraph.Load(path);
        var report = new ModelReport
        {
            File = path,
            SizeBytes = new FileInfo(path).Length,
            ModelBytes = g.SizeBytes,
            IrVersion = g.Model.IrVersion,
            Opset = g.Opset,
            Producer = $"{g.Model.ProducerName} {g.Model.ProducerVersion}".Trim(),
            Opsets = g.Model.OpsetImport.ToDictionary(o => o.Domain is "" ? "ai.onnx" : o.Domain, o => o.Version),
            Inputs = g.RealInputs().Select(Tensor).ToList(),
            Outputs = g.Graph.Output.Select(Tensor).ToList(),
            Nodes = g.Graphs().Sum(x => x.Node.Count),
            Subgraphs = g.Graphs().Count() - 1,
            Operators = g.Nodes().GroupBy(n => n.Domain is "" or "ai.onnx" ? n.OpType : $"{n.Domain}.{n.OpType}")
                .OrderByDescending(x => x.Count()).ThenBy(x => x.Key, StringComparer.Ordinal).ToDictionary(x => x.Key, x => x.Count()),
            Parameters = g.Tensors().Sum(x => OnnxGraph.Elements(x.Tensor)),
            ExternalData = g.ExternalFiles,
            Quantization = Quantization(g),
        };
        if (path.EndsWith(".edgepkg", StringComparison.OrdinalIgnoreCase))
        {
            var m = Protocol.Packages.ModelPackage.Open(path).Manifest;
            report.Manifest = new ManifestSummary(m.Name, m.Version, m.Description,
                m.Inputs.Select(i => $"{i.Name} [{string.Join(",", i.Shape)}] ← {(i.Source is { } s ? $"{string.Join(",", s.Channels)} window {s.Window} hop {s.Hop} @ {s.SampleRateHz} Hz" : "tensor")}").ToList(),
                m.Outputs.Select(o => $"{o.Name} [{string.Join(",", o.Shape)}] {o.Kind}{(o.Labels is { Count: > 0 } l ? $" ({string.Join(", ", l)})" : "")}").ToList(),
                m.State.Count, m.Quantization is { } q ? $"{q.Format}: weights {q.Weights}, activations {q.Activations}{(q.PerChannel ? ", per channel" : "")}" : null,
                m.Baseline is { } b ? $"{b.Features.Count} features, {b.Outputs.Count} outputs over {b.Samples} samples" : null,
                Protocol.Packages.ModelPackage.Open(path).Signature is not null);
        }

        return report;
    }

    private static TensorInfo Tensor(ValueInfoProto v) =>
        new(v.Name, OnnxGraph.ElementType(v.Type?.TensorType?.ElemType ?? 0), v.Type?.TensorType?.Shape?.Dim
            .Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue.ToString(System.Globalization.CultureInfo.InvariantCulture) : d.DimParam is { Length: > 0 } p ? p : "?").ToList() ?? []);

    /// <summary>none, QDQ (static), dynamic (ONNX Runtime's ConvInteger/MatMulInteger), QOperator (QLinear*), with what is int8 — in every graph and subgraph.</summary>
    public static string Quantization(OnnxGraph g)
    {
        var nodes = g.Nodes().ToList();
        var inits = g.AllInitializers();
        var ops = nodes.Select(n => n.OpType).ToList();
        var int8 = inits.Values.Where(t => t.DataType is (int)TensorProto.Types.DataType.Int8 or (int)TensorProto.Types.DataType.Uint8).ToList();
        var perChannel = nodes.Count(n => n.OpType == "DequantizeLinear" && inits.TryGetValue(n.Input[1], out var s) && OnnxGraph.Elements(s) > 1);
        if (ops.Any(o => o.StartsWith("QLinear", StringComparison.Ordinal))) return $"QOperator ({ops.Count(o => o.StartsWith("QLinear", StringComparison.Ordinal))} QLinear* nodes)";
        if (ops.Any(o => o is "DynamicQuantizeLinear" or "MatMulInteger" or "ConvInteger" or "DynamicQuantizeMatMul" or "DynamicQuantizeLSTM" or "MatMulIntegerToFloat"))
        {
            var kinds = new[] { "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "MatMulIntegerToFloat" }.Where(ops.Contains).Select(k => $"{ops.Count(o => o == k)} {k}");
            return $"dynamic (ONNX Runtime dynamic quantization): {string.Join(", ", kinds)} with int8 weights, activations quantized at run time";
        }

        if (ops.Contains("QuantizeLinear") || ops.Contains("DequantizeLinear"))
        {
            var q = nodes.Where(n => n.OpType == "QuantizeLinear").Select(n => n.Input.Count > 2 && inits.TryGetValue(n.Input[2], out var z) ? z.DataType : (int?)null).FirstOrDefault();
            if (q is null && !ops.Contains("QuantizeLinear")) return $"weight-only int8: {int8.Count} int8 tensors dequantized to float ({perChannel} per-channel), computation in float";
            var act = q == (int)TensorProto.Types.DataType.Int8 ? "int8" : "uint8";
            return $"QDQ: {ops.Count(o => o == "QuantizeLinear")} activations ({act}), {int8.Count} int8 tensors, {perChannel} per-channel";
        }

        return "none (float)";
    }
}

public sealed class ModelReport
{
    public string File { get; set; } = "";
    public long SizeBytes { get; set; }
    public long ModelBytes { get; set; }
    public long IrVersion { get; set; }
    public long Opset { get; set; }
    public string Producer { get; set; } = "";
    public Dictionary<string, long> Opsets { get; set; } = [];
    public List<TensorInfo> Inputs { get; set; } = [];
    public List<TensorInfo> Outputs { get; set; } = [];
    /// <summary>Nodes in the graph and in every subgraph (If/Loop/Scan bodies).</summary>
    public int Nodes { get; set; }
    public int Subgraphs { get; set; }
    /// <summary>External data files (relative location → bytes).</summary>
    public Dictionary<string, long> ExternalData { get; set; } = [];
    public Dictionary<string, int> Operators { get; set; } = [];
    /// <summary>Elements of every stored tensor: initializers and Constant values, subgraphs included.</summary>
    public long Parameters { get; set; }
    public string Quantization { get; set; } = "";
    public ManifestSummary? Manifest { get; set; }
}

public sealed record TensorInfo(string Name, string Type, List<string> Shape);

public sealed record ManifestSummary(string Name, string Version, string? Description, List<string> Inputs, List<string> Outputs, int StateTensors,
    string? Quantization, string? Baseline, bool Signed);
