using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;

namespace EdgeMl.ModelTools;

/// <summary>An ONNX model as protobuf (OnnxSharp's generated classes), with the helpers the tools share.</summary>
public sealed class OnnxGraph
{
    /// <summary>Protobuf cannot serialize a message of 2 GiB or more; above this the weights go to an external data file.</summary>
    public const long ProtobufLimit = 2L * 1024 * 1024 * 1024 - 64 * 1024 * 1024;

    private OnnxGraph(ModelProto model, string source, long sizeBytes, string sha256, string? path)
    {
        OriginalSha256 = sha256;
        Model = model;
        Source = source;
        SizeBytes = sizeBytes;
        Path = path;
    }

    public ModelProto Model { get; }
    public GraphProto Graph => Model.Graph;
    public string Source { get; }

    /// <summary>SHA-256 of the model as read (before any change).</summary>
    public string OriginalSha256 { get; }
    /// <summary>Size of the model: the .onnx file plus its external data files.</summary>
    public long SizeBytes { get; private set; }

    /// <summary>The <c>.onnx</c> file it was read from (null for a model in a package or in memory): ONNX Runtime loads it from there.</summary>
    public string? Path { get; }

    /// <summary>External data files the model's tensors were read from (relative location → bytes of the file).</summary>
    public Dictionary<string, long> ExternalFiles { get; } = new(StringComparer.Ordinal);

    /// <summary>Tensors read from external data files.</summary>
    public int ExternalTensors { get; private set; }

    /// <summary>Reads an <c>.onnx</c> file (with the external data files it names, relative to it), or the model inside an <c>.edgepkg</c>.</summary>
    /// <exception cref="ModelToolException">Not a model, or a tensor whose data cannot be read (names the tensor and the file).</exception>
    public static OnnxGraph Load(string path)
    {
        if (Directory.Exists(path)) throw new ModelToolException($"'{path}' is a directory, not a model file");
        if (!File.Exists(path)) throw new ModelToolException($"'{path}' does not exist");
        if (path.EndsWith(".edgepkg", StringComparison.OrdinalIgnoreCase))
        {
            var package = Protocol.Packages.ModelPackage.Open(path);
            return Parse(package.ModelBytes, $"{path} (model.onnx)");
        }

        return Parse(InputFiles.ReadAll(path, "model"), path, path);
    }

    /// <param name="path">The file the bytes came from: external data locations are relative to its folder; null: none allowed.</param>
    public static OnnxGraph Parse(byte[] bytes, string source, string? path = null)
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

        var g = new OnnxGraph(model, source, bytes.LongLength, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)), path);
        g.ReadExternalData();
        return g;
    }

    /// <summary>The graph and every subgraph (If/Loop/Scan bodies, at any depth).</summary>
    public IEnumerable<GraphProto> Graphs() => Nested(Graph);

    /// <summary>The nodes of the graph and of every subgraph.</summary>
    public IEnumerable<NodeProto> Nodes() => Graphs().SelectMany(x => x.Node);

    private static IEnumerable<GraphProto> Nested(GraphProto graph)
    {
        yield return graph;
        foreach (var n in graph.Node)
        {
            foreach (var sub in Subgraphs(n).SelectMany(Nested)) yield return sub;
        }
    }

    /// <summary>The graphs in a node's attributes (If's branches, Loop's and Scan's body).</summary>
    public static IEnumerable<GraphProto> Subgraphs(NodeProto n) =>
        n.Attribute.SelectMany(a => a.G is { } g ? a.Graphs.Prepend(g) : a.Graphs);

    /// <summary>Every tensor stored in the model: initializers and Constant values of every graph.</summary>
    public IEnumerable<(TensorProto Tensor, GraphProto Graph)> Tensors() => Tensors(Graph);

    private static IEnumerable<(TensorProto Tensor, GraphProto Graph)> Tensors(GraphProto graph) =>
        Nested(graph).SelectMany(g => g.Initializer.Select(t => (t, g))
            .Concat(g.Node.Where(n => n.OpType == "Constant").SelectMany(n => n.Attribute.Where(a => a.T is not null).Select(a => (a.T, g)))));

    /// <summary>
    /// Loads the data of tensors stored outside the file (<c>data_location: EXTERNAL</c>; <c>location</c> relative to
    /// the model's folder, <c>offset</c>, <c>length</c>) into the tensors, and refuses a tensor whose data is missing.
    /// </summary>
    private void ReadExternalData()
    {
        var folder = Path is null ? null : System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path))!;
        var files = new Dictionary<string, FileStream>(StringComparer.Ordinal);
        try
        {
            foreach (var (t, _) in Tensors())
            {
                if (t.DataLocation == TensorProto.Types.DataLocation.External)
                {
                    var entries = t.ExternalData.ToDictionary(e => e.Key, e => e.Value, StringComparer.Ordinal);
                    var location = entries.GetValueOrDefault("location") ?? throw new ModelToolException($"{Source}: tensor '{t.Name}' is stored externally but names no location");
                    if (folder is null) throw new ModelToolException($"{Source}: tensor '{t.Name}' is stored in an external file ('{location}'), which a packaged model cannot have");
                    var full = System.IO.Path.GetFullPath(System.IO.Path.Combine(folder, location));
                    if (System.IO.Path.IsPathRooted(location) || !full.StartsWith(folder + System.IO.Path.DirectorySeparatorChar, StringComparison.Ordinal))
                    {
                        throw new ModelToolException($"{Source}: tensor '{t.Name}': external data location '{location}' is outside the model's folder");
                    }

                    if (!files.TryGetValue(location, out var f))
                    {
                        if (!File.Exists(full)) throw new ModelToolException($"{Source}: tensor '{t.Name}' is stored in '{full}', which does not exist");
                        files[location] = f = File.OpenRead(full);
                        ExternalFiles[location] = f.Length;
                        SizeBytes += f.Length;
                    }

                    var offset = entries.TryGetValue("offset", out var o) ? long.Parse(o, System.Globalization.CultureInfo.InvariantCulture) : 0;
                    var length = entries.TryGetValue("length", out var l) ? long.Parse(l, System.Globalization.CultureInfo.InvariantCulture) : f.Length - offset;
                    if (offset < 0 || length < 0 || offset + length > f.Length)
                    {
                        throw new ModelToolException($"{Source}: tensor '{t.Name}': bytes {offset}..{offset + length} of '{full}' asked for, the file has {f.Length}");
                    }

                    var bytes = new byte[length];
                    f.Position = offset;
                    f.ReadExactly(bytes);
                    t.RawData = ByteString.CopyFrom(bytes);
                    t.ExternalData.Clear();
                    t.DataLocation = TensorProto.Types.DataLocation.Default;
                    ExternalTensors++;
                }

                var size = ElementSize(t.DataType);
                if (Elements(t) > 0 && size > 0 && !t.RawData.IsEmpty && t.RawData.Length != Elements(t) * size)
                {
                    throw new ModelToolException($"{Source}: tensor '{t.Name}' has {t.RawData.Length} bytes of data, its shape [{string.Join(",", t.Dims)}] of {ElementType(t.DataType)} needs {Elements(t) * size}");
                }

                if (Elements(t) > 0 && !HasData(t)) throw new ModelToolException($"{Source}: tensor '{t.Name}' ({ElementType(t.DataType)} [{string.Join(",", t.Dims)}]) has no data");
            }
        }
        finally
        {
            foreach (var f in files.Values) f.Dispose();
        }
    }

    private static bool HasData(TensorProto t) => !t.RawData.IsEmpty || t.FloatData.Count > 0 || t.Int32Data.Count > 0 || t.Int64Data.Count > 0 || t.DoubleData.Count > 0
        || t.Uint64Data.Count > 0 || t.StringData.Count > 0;

    /// <summary>Bytes per element of a fixed-size type in raw_data (0: not fixed or not known).</summary>
    public static int ElementSize(int type) => ((TensorProto.Types.DataType)type) switch
    {
        TensorProto.Types.DataType.Float or TensorProto.Types.DataType.Int32 or TensorProto.Types.DataType.Uint32 => 4,
        TensorProto.Types.DataType.Double or TensorProto.Types.DataType.Int64 or TensorProto.Types.DataType.Uint64 => 8,
        TensorProto.Types.DataType.Float16 or TensorProto.Types.DataType.Bfloat16 or TensorProto.Types.DataType.Int16 or TensorProto.Types.DataType.Uint16 => 2,
        TensorProto.Types.DataType.Int8 or TensorProto.Types.DataType.Uint8 or TensorProto.Types.DataType.Bool => 1,
        _ => 0,
    };

    /// <summary>An ONNX Runtime session on the file this model was read from (as read: changes made since are not in it).</summary>
    /// <exception cref="ModelToolException">ONNX Runtime cannot load it (names the file and says why).</exception>
    public Microsoft.ML.OnnxRuntime.InferenceSession OpenSession(Microsoft.ML.OnnxRuntime.SessionOptions options) =>
        Path is not null ? OpenSession(Path, options, Source) : OpenSession(Model, options, Source);

    /// <summary>
    /// An ONNX Runtime session on a model in memory, written to a temporary folder first (with external data when it is
    /// large), so that ONNX Runtime reads it from a path as it reads every model here.
    /// </summary>
    public static Microsoft.ML.OnnxRuntime.InferenceSession OpenSession(ModelProto model, Microsoft.ML.OnnxRuntime.SessionOptions options, string source)
    {
        var dir = Directory.CreateTempSubdirectory("edgeml-model-");
        try
        {
            var path = System.IO.Path.Combine(dir.FullName, "model.onnx");
            new OnnxGraph(model, source, 0, "", null).Save(path);
            return OpenSession(path, options, source);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>An ONNX Runtime session from a path (so it resolves external data relative to it).</summary>
    public static Microsoft.ML.OnnxRuntime.InferenceSession OpenSession(string path, Microsoft.ML.OnnxRuntime.SessionOptions options, string source)
    {
        try
        {
            return new Microsoft.ML.OnnxRuntime.InferenceSession(path, options);
        }
        catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException e)
        {
            throw new ModelToolException($"{source}: ONNX Runtime cannot load it: {e.Message}", e);
        }
    }

    /// <summary>The model serialized (in memory, so under protobuf's 2 GB limit; <see cref="Save"/> writes larger ones).</summary>
    public byte[] ToBytes()
    {
        if (Model.CalculateSize() >= ProtobufLimit) throw new ModelToolException($"{Source}: the model is over protobuf's 2 GB limit; it can only be written to a file with external data");
        return Model.ToByteArray();
    }

    /// <summary>
    /// Writes the model to <paramref name="path"/>; when it would pass protobuf's 2 GB limit (or <paramref name="externalAbove"/>
    /// bytes), tensors of 1 KiB or more go to <c>PATH.data</c> beside it (ONNX external data), which is replaced.
    /// </summary>
    public void Save(string path, long externalAbove = ProtobufLimit)
    {
        var data = path + ".data";
        if (File.Exists(data)) File.Delete(data);
        if (Model.CalculateSize() < externalAbove)
        {
            File.WriteAllBytes(path, Model.ToByteArray());
            return;
        }

        WriteWithExternalData(Model, path, System.IO.Path.GetFileName(data), 1024);
    }

    /// <summary>
    /// Writes a copy of <paramref name="model"/> whose tensors (initializers and Constant values, subgraphs too) of
    /// <paramref name="minBytes"/> or more are in the file <paramref name="location"/> (relative to the model's folder),
    /// 4 KiB-aligned, as <c>onnx.save_model(…, save_as_external_data=True)</c> does. The model itself is not changed.
    /// </summary>
    public static void WriteWithExternalData(ModelProto model, string path, string location, long minBytes)
    {
        var copy = model.Clone();
        var dataPath = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!, location);
        using (var data = File.Create(dataPath))
        {
            foreach (var (t, _) in Tensors(copy.Graph))
            {
                if (t.RawData.IsEmpty && t.FloatData.Count > 0) t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(t.FloatData.ToArray().AsSpan()));
                if (t.RawData.Length < minBytes) continue;
                t.FloatData.Clear();
                var offset = (data.Position + 4095) / 4096 * 4096;
                data.Position = offset;
                t.RawData.WriteTo(data);
                t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
                t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = t.RawData.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                t.DataLocation = TensorProto.Types.DataLocation.External;
                t.RawData = ByteString.Empty;
            }
        }

        File.WriteAllBytes(path, copy.ToByteArray());
    }

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

    /// <summary>Initializers of every graph and subgraph by name (a subgraph reads the outer ones by name too).</summary>
    public Dictionary<string, TensorProto> AllInitializers() =>
        Graphs().SelectMany(x => x.Initializer).GroupBy(t => t.Name, StringComparer.Ordinal).ToDictionary(x => x.Key, x => x.First(), StringComparer.Ordinal);

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

    /// <summary>A float32 tensor's values (float_data or raw_data); a float16 one's widened to float32.</summary>
    /// <exception cref="ModelToolException">Another type, or no data (names the tensor).</exception>
    public static float[] Floats(TensorProto t)
    {
        var count = Elements(t);
        float[] values;
        if (t.DataType == (int)TensorProto.Types.DataType.Float)
        {
            values = t.FloatData.Count > 0 ? [.. t.FloatData] : MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray();
        }
        else if (t.DataType == (int)TensorProto.Types.DataType.Float16)
        {
            // float16 in int32_data holds one value's bits per entry.
            values = t.Int32Data.Count > 0
                ? t.Int32Data.Select(v => (float)BitConverter.UInt16BitsToHalf((ushort)v)).ToArray()
                : MemoryMarshal.Cast<byte, Half>(t.RawData.Span).ToArray().Select(h => (float)h).ToArray();
        }
        else
        {
            throw new ModelToolException($"tensor '{t.Name}' is {ElementType(t.DataType)}, not float32 or float16");
        }

        if (values.Length != count) throw new ModelToolException($"tensor '{t.Name}' has {values.Length} values, its shape [{string.Join(",", t.Dims)}] needs {count}");
        return values;
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

    public static AttributeProto String(string name, string value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

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
