using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;

namespace EdgeMl.ModelTools;

/// <summary>An ONNX model as protobuf (OnnxSharp's generated classes), with the helpers the tools share.</summary>
public sealed class OnnxGraph
{
    private OnnxGraph(ModelProto model, string source, long sizeBytes, string sha256)
    {
        OriginalSha256 = sha256;
        Model = model;
        Source = source;
        SizeBytes = sizeBytes;
    }

    public ModelProto Model { get; }
    public GraphProto Graph => Model.Graph;
    public string Source { get; }

    /// <summary>SHA-256 of the model as read (before any change).</summary>
    public string OriginalSha256 { get; }
    public long SizeBytes { get; }

    /// <summary>Reads an <c>.onnx</c> file, or the model inside an <c>.edgepkg</c>.</summary>
    public static OnnxGraph Load(string path)
    {
        if (!File.Exists(path)) throw new ModelToolException($"'{path}' does not exist");
        if (path.EndsWith(".edgepkg", StringComparison.OrdinalIgnoreCase))
        {
            var package = Protocol.Packages.ModelPackage.Open(path);
            return Parse(package.ModelBytes, $"{path} (model.onnx)");
        }

        return Parse(File.ReadAllBytes(path), path);
    }

    public static OnnxGraph Parse(byte[] bytes, string source)
    {
        ModelProto model;
        try
        {
            model = ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new ModelToolException($"{source} is not an ONNX model (protobuf: {e.Message})", e);
        }

        if (model.Graph is null || (model.Graph.Node.Count == 0 && model.Graph.Output.Count == 0))
        {
            throw new ModelToolException($"{source} is not an ONNX model: it has no graph");
        }

        return new OnnxGraph(model, source, bytes.LongLength, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)));
    }

    public byte[] ToBytes() => Model.ToByteArray();

    /// <summary>The default-domain opset.</summary>
    public long Opset => Model.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx")?.Version ?? 0;

    public void SetOpset(long version)
    {
        var o = Model.OpsetImport.FirstOrDefault(x => x.Domain is "" or "ai.onnx");
        if (o is null) Model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = version });
        else o.Version = version;
        if (Model.IrVersion < 7) Model.IrVersion = 7;
    }

    public Dictionary<string, TensorProto> Initializers() => Graph.Initializer.ToDictionary(t => t.Name);

    /// <summary>Graph inputs that are not initializers (older exporters list initializers as inputs too).</summary>
    public List<ValueInfoProto> RealInputs()
    {
        var init = Graph.Initializer.Select(i => i.Name).ToHashSet();
        return Graph.Input.Where(i => !init.Contains(i.Name)).ToList();
    }

    public static long[] Shape(ValueInfoProto v) =>
        v.Type?.TensorType?.Shape?.Dim.Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue : -1).ToArray() ?? [];

    public static string ElementType(int type) => ((TensorProto.Types.DataType)type) switch
    {
        TensorProto.Types.DataType.Float => "float32",
        TensorProto.Types.DataType.Double => "float64",
        TensorProto.Types.DataType.Float16 => "float16",
        TensorProto.Types.DataType.Uint8 => "uint8",
        TensorProto.Types.DataType.Int8 => "int8",
        TensorProto.Types.DataType.Int32 => "int32",
        TensorProto.Types.DataType.Int64 => "int64",
        TensorProto.Types.DataType.Bool => "bool",
        var t => t.ToString().ToLowerInvariant(),
    };

    public static long Elements(TensorProto t) => t.Dims.Aggregate(1L, (a, d) => a * d);

    /// <summary>A float tensor's values (float_data or raw_data).</summary>
    public static float[] Floats(TensorProto t)
    {
        if (t.DataType != (int)TensorProto.Types.DataType.Float) throw new ModelToolException($"initializer '{t.Name}' is {ElementType(t.DataType)}, not float32");
        if (t.FloatData.Count > 0) return [.. t.FloatData];
        if (!t.RawData.IsEmpty) return MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray();
        return new float[Elements(t)];
    }

    public static TensorProto FloatTensor(string name, float[] values, params long[] dims) => Raw(name, TensorProto.Types.DataType.Float, MemoryMarshal.AsBytes(values.AsSpan()), dims);

    public static TensorProto Int8Tensor(string name, sbyte[] values, params long[] dims) => Raw(name, TensorProto.Types.DataType.Int8, MemoryMarshal.AsBytes(values.AsSpan()), dims);

    public static TensorProto UInt8Tensor(string name, byte[] values, params long[] dims) => Raw(name, TensorProto.Types.DataType.Uint8, values, dims);

    public static TensorProto Int32Tensor(string name, int[] values, params long[] dims) => Raw(name, TensorProto.Types.DataType.Int32, MemoryMarshal.AsBytes(values.AsSpan()), dims);

    public static TensorProto Int64Tensor(string name, long[] values, params long[] dims) => Raw(name, TensorProto.Types.DataType.Int64, MemoryMarshal.AsBytes(values.AsSpan()), dims);

    private static TensorProto Raw(string name, TensorProto.Types.DataType type, ReadOnlySpan<byte> bytes, long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(bytes) };
        t.Dims.AddRange(dims);
        return t;
    }

    public static long IntAttribute(NodeProto n, string name, long fallback) => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;

    public static float FloatAttribute(NodeProto n, string name, float fallback) => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.F : fallback;

    public static NodeProto Node(string op, string name, IEnumerable<string> inputs, IEnumerable<string> outputs, params AttributeProto[] attributes)
    {
        var n = new NodeProto { OpType = op, Name = name };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        n.Attribute.AddRange(attributes);
        return n;
    }

    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static ValueInfoProto FloatValue(string name) => new()
    {
        Name = name,
        Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float } },
    };

    public static readonly IReadOnlySet<string> QuantizedOps = new HashSet<string>
    {
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger",
        "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat",
        "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "MatMulIntegerToFloat", "QGemm", "QAttention",
    };
}
