using Google.Protobuf;
using Onnx;

namespace EdgeMl.TestUtilities;

/// <summary>
/// Small real models of the kinds the toolchain must handle, built in code as ONNX protobuf with seeded random
/// weights (He initialization): an MLP (Gemm/MatMul), a ResNet-style conv net with BatchNormalization, a residual Add
/// and a depthwise conv (NCHW), a 1-D conv net on sensor windows, LSTM and GRU models with state inputs and outputs,
/// and a ResNet-18-sized net for latency. Any opset from 11 to 21.
/// </summary>
public sealed class ModelZoo
{
    private readonly GraphProto _g = new() { Name = "zoo" };
    private readonly Random _random;
    private int _n;

    private ModelZoo(int seed) => _random = new Random(seed);

    public static byte[] Mlp(int opset, int seed = 1)
    {
        var z = new ModelZoo(seed);
        z.In("features", 1, 16);
        var h = z.Gemm("features", 16, 32, transB: true);
        h = z.Op("Relu", h);
        h = z.MatMulAdd(h, 32, 24);
        h = z.Op("Relu", h);
        var logits = z.Gemm(h, 24, 4, transB: false);
        return z.Build(opset, (logits, [1, 4]));
    }

    /// <summary>A wider MLP (256 → 1024 → 1024 → 10, 1.3 M parameters) for size and latency figures.</summary>
    public static byte[] WideMlp(int seed = 6)
    {
        var z = new ModelZoo(seed);
        z.In("features", 1, 256);
        var h = z.Op("Relu", z.Gemm("features", 256, 1024, transB: true));
        h = z.Op("Relu", z.Gemm(h, 1024, 1024, transB: true));
        var logits = z.Gemm(h, 1024, 10, transB: true);
        return z.Build(13, (logits, [1, 10]));
    }

    public static byte[] ConvNet(int opset, int seed = 2)
    {
        var z = new ModelZoo(seed);
        z.In("image", 1, 3, 16, 16);
        var x = z.Conv("image", 3, 8, 3, pad: 1, stride: 1, bias: false);
        x = z.BatchNorm(x, 8);
        x = z.Op("Relu", x);
        var y = z.Conv(x, 8, 8, 3, pad: 1, stride: 1);
        y = z.Op("Relu", y);
        y = z.Conv(y, 8, 8, 3, pad: 1, stride: 1);
        x = z.Op("Relu", z.Op("Add", x, y)); // residual
        x = z.Conv(x, 8, 8, 3, pad: 1, stride: 2, group: 8); // depthwise (MobileNet)
        x = z.Op("Relu", x);
        x = z.Conv(x, 8, 16, 1, pad: 0, stride: 1); // pointwise
        x = z.Op("Relu", x);
        x = z.Op("GlobalAveragePool", x);
        x = z.Op("Flatten", x);
        var logits = z.Gemm(x, 16, 5, transB: true);
        return z.Build(opset, (logits, [1, 5]));
    }

    public static byte[] Conv1d(int opset, int seed = 3)
    {
        var z = new ModelZoo(seed);
        z.In("window", 1, 3, 64);
        var x = z.Conv("window", 3, 8, 5, pad: 2, stride: 1);
        x = z.Op("Relu", x);
        x = z.Pool("MaxPool", x, 2);
        x = z.Conv(x, 8, 16, 5, pad: 2, stride: 1);
        x = z.Op("Relu", x);
        x = z.Op("GlobalAveragePool", x);
        x = z.Op("Flatten", x);
        var logits = z.Gemm(x, 16, 3, transB: true);
        return z.Build(opset, (logits, [1, 3]));
    }

    /// <summary>X [10, 1, 6], state h [1, 1, 12] (and c for LSTM) in and out; logits [1, 3] from the last hidden state.</summary>
    public static byte[] Recurrent(string op, int opset, int seed = 4)
    {
        const int t = 10, i = 6, h = 12;
        var gates = op == "LSTM" ? 4 : 3;
        var z = new ModelZoo(seed);
        z.In("x", t, 1, i);
        z.In("h0", 1, 1, h);
        if (op == "LSTM") z.In("c0", 1, 1, h);
        var w = z.Weight([1, gates * h, i], i);
        var r = z.Weight([1, gates * h, h], h);
        var b = z.Const([1, 2 * gates * h], z.Small(2 * gates * h));
        var outputs = op == "LSTM" ? new[] { "y", "h1", "c1" } : ["y", "h1"];
        var inputs = op == "LSTM" ? new[] { "x", w, r, b, "", "h0", "c0" } : ["x", w, r, b, "", "h0"];
        var node = z.Node(op, inputs, outputs);
        node.Attribute.Add(new AttributeProto { Name = "hidden_size", Type = AttributeProto.Types.AttributeType.Int, I = h });
        var last = z.Reshape("h1", [1, h]);
        var logits = z.MatMulAdd(last, h, 3);
        return op == "LSTM"
            ? z.Build(opset, (logits, [1, 3]), ("h1", [1, 1, h]), ("c1", [1, 1, h]))
            : z.Build(opset, (logits, [1, 3]), ("h1", [1, 1, h]));
    }

    /// <summary>
    /// A MobileNetV3-style conv net: Conv → hard-swish written as exporters write it (x · Clip(x + 3, 0, 6) / 6, float
    /// ops reading the Conv's output beside the next layer) → Conv → Relu → GlobalAveragePool → Gemm, at opset 13.
    /// </summary>
    public static byte[] HardSwishNet(int seed = 8)
    {
        var z = new ModelZoo(seed);
        z.In("image", 1, 3, 16, 16);
        var x = z.Conv("image", 3, 8, 3, pad: 1, stride: 1);
        var gate = z.Op("Div", z.Op("Clip", z.Op("Add", x, z.Const([], [3f])), z.Const([], [0f]), z.Const([], [6f])), z.Const([], [6f]));
        x = z.Op("Mul", x, gate);
        x = z.Op("Relu", z.Conv(x, 8, 16, 3, pad: 1, stride: 1));
        x = z.Op("Flatten", z.Op("GlobalAveragePool", x));
        var logits = z.Gemm(x, 16, 5, transB: true);
        return z.Build(13, (logits, [1, 5]));
    }

    /// <summary>A ResNet-18 (BatchNorm folded into conv biases) at batch 1, 3×<paramref name="size"/>², 1,000 classes.</summary>
    public static byte[] ResNet18(int size = 224, int seed = 5)
    {
        var z = new ModelZoo(seed);
        z.In("image", 1, 3, size, size);
        var x = z.Op("Relu", z.Conv("image", 3, 64, 7, pad: 3, stride: 2));
        x = z.Pool("MaxPool", x, 3, stride: 2, pad: 1);
        var channels = 64;
        foreach (var (width, stride) in new[] { (64, 1), (128, 2), (256, 2), (512, 2) })
        {
            for (var block = 0; block < 2; block++)
            {
                var s = block == 0 ? stride : 1;
                var y = z.Op("Relu", z.Conv(x, channels, width, 3, pad: 1, stride: s));
                y = z.Conv(y, width, width, 3, pad: 1, stride: 1);
                var shortcut = s != 1 || channels != width ? z.Conv(x, channels, width, 1, pad: 0, stride: s) : x;
                x = z.Op("Relu", z.Op("Add", y, shortcut));
                channels = width;
            }
        }

        x = z.Op("Flatten", z.Op("GlobalAveragePool", x));
        var logits = z.Gemm(x, 512, 1000, transB: true);
        return z.Build(13, (logits, [1, 1000]));
    }

    /// <summary>Seeded standard-normal data of the given shape (for calibration and evaluation sets).</summary>
    public static float[] Normal(int seed, long count, float scale = 1f)
    {
        var r = new Random(seed);
        var v = new float[count];
        for (var i = 0; i < count; i++) v[i] = scale * (float)(Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble()));
        return v;
    }

    private float Gaussian() => (float)(Math.Sqrt(-2 * Math.Log(1 - _random.NextDouble())) * Math.Cos(2 * Math.PI * _random.NextDouble()));

    private float[] Small(int n) => Enumerable.Range(0, n).Select(_ => 0.05f * Gaussian()).ToArray();

    private string Weight(long[] dims, long fanIn)
    {
        var count = dims.Aggregate(1L, (a, b) => a * b);
        var std = (float)Math.Sqrt(2.0 / fanIn);
        return Const(dims, Enumerable.Range(0, (int)count).Select(_ => std * Gaussian()).ToArray());
    }

    private string Const(long[] dims, float[] values)
    {
        var name = $"w{_n++}";
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float, RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan())) };
        t.Dims.AddRange(dims);
        _g.Initializer.Add(t);
        return name;
    }

    private void In(string name, params long[] shape) => _g.Input.Add(Value(name, shape));

    private NodeProto Node(string op, string[] inputs, string[] outputs)
    {
        var n = new NodeProto { OpType = op, Name = $"{op.ToLowerInvariant()}_{_n++}" };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        _g.Node.Add(n);
        return n;
    }

    private string Op(string op, params string[] inputs)
    {
        var o = $"t{_n++}";
        Node(op, inputs, [o]);
        if (inputs.Any(_oneD.Contains)) _oneD.Add(o); // 1-D activations stay 1-D through elementwise ops
        return o;
    }

    private string Conv(string x, int cin, int cout, int k, int pad, int stride, int group = 1, bool bias = true)
    {
        var w = Weight([cout, cin / group, k, k], cin / group * k * k);
        var o = $"t{_n++}";
        var node = Node("Conv", bias ? [x, w, Const([cout], Small(cout))] : [x, w], [o]);
        node.Attribute.Add(Ints("kernel_shape", k, k));
        node.Attribute.Add(Ints("pads", pad, pad, pad, pad));
        node.Attribute.Add(Ints("strides", stride, stride));
        if (group > 1) node.Attribute.Add(new AttributeProto { Name = "group", Type = AttributeProto.Types.AttributeType.Int, I = group });
        if (_g.Input.Any(i => i.Name == x && i.Type.TensorType.Shape.Dim.Count == 3) || IsOneD(x))
        {
            // 1-D: the same conv with one spatial axis.
            node.Attribute.Clear();
            node.Attribute.Add(Ints("kernel_shape", k));
            node.Attribute.Add(Ints("pads", pad, pad));
            node.Attribute.Add(Ints("strides", stride));
            ReplaceWeight(w, [cout, cin / group, k]);
            _oneD.Add(o);
        }

        return o;
    }

    private readonly HashSet<string> _oneD = [];

    private bool IsOneD(string x) => _oneD.Contains(x);

    private void ReplaceWeight(string name, long[] dims)
    {
        var t = _g.Initializer.First(i => i.Name == name);
        var count = dims.Aggregate(1L, (a, b) => a * b);
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span)[..(int)count].ToArray();
        t.Dims.Clear();
        t.Dims.AddRange(dims);
        t.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
    }

    private string Pool(string op, string x, int k, int stride = 0, int pad = 0)
    {
        var o = $"t{_n++}";
        var node = Node(op, [x], [o]);
        var oneD = IsOneD(x);
        node.Attribute.Add(oneD ? Ints("kernel_shape", k) : Ints("kernel_shape", k, k));
        node.Attribute.Add(oneD ? Ints("strides", stride > 0 ? stride : k) : Ints("strides", stride > 0 ? stride : k, stride > 0 ? stride : k));
        if (pad > 0) node.Attribute.Add(oneD ? Ints("pads", pad, pad) : Ints("pads", pad, pad, pad, pad));
        if (oneD) _oneD.Add(o);
        return o;
    }

    private string BatchNorm(string x, int c)
    {
        var scale = Const([c], Enumerable.Range(0, c).Select(_ => 1f + 0.1f * Gaussian()).ToArray());
        var shift = Const([c], Small(c));
        var mean = Const([c], Small(c));
        var variance = Const([c], Enumerable.Range(0, c).Select(_ => 1f + 0.2f * Math.Abs(Gaussian())).ToArray());
        var o = $"t{_n++}";
        Node("BatchNormalization", [x, scale, shift, mean, variance], [o]);
        return o;
    }

    private string Gemm(string x, int k, int n, bool transB)
    {
        var w = transB ? Weight([n, k], k) : Weight([k, n], k);
        var o = $"t{_n++}";
        var node = Node("Gemm", [x, w, Const([n], Small(n))], [o]);
        if (transB) node.Attribute.Add(new AttributeProto { Name = "transB", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
        return o;
    }

    private string MatMulAdd(string x, int k, int n)
    {
        var w = Weight([k, n], k);
        return Op("Add", Op("MatMul", x, w), Const([n], Small(n)));
    }

    private string Reshape(string x, long[] shape)
    {
        var name = $"shape{_n++}";
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.Add(shape.Length);
        t.Int64Data.AddRange(shape);
        _g.Initializer.Add(t);
        return Op("Reshape", x, name);
    }

    private static AttributeProto Ints(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    private static ValueInfoProto Value(string name, long[] shape)
    {
        var s = new TensorShapeProto();
        foreach (var d in shape) s.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = s } } };
    }

    private byte[] Build(int opset, params (string Name, long[] Shape)[] outputs)
    {
        foreach (var (name, shape) in outputs)
        {
            // The graph's outputs get stable names.
            var stable = name is "h1" or "c1" ? name : outputs.Length > 0 && name == outputs[0].Name ? "logits" : name;
            if (stable != name)
            {
                foreach (var n in _g.Node) for (var i = 0; i < n.Output.Count; i++) if (n.Output[i] == name) n.Output[i] = stable;
                foreach (var n in _g.Node) for (var i = 0; i < n.Input.Count; i++) if (n.Input[i] == name) n.Input[i] = stable;
            }

            _g.Output.Add(Value(stable, shape));
        }

        var m = new ModelProto { IrVersion = opset >= 21 ? 10 : opset >= 15 ? 8 : 7, ProducerName = "edgeml-model-zoo", Graph = _g };
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        return m.ToByteArray();
    }
}
