using Google.Protobuf;
using Onnx;

namespace EdgeMl.TestUtilities;

/// <summary>
/// Rewrites a <see cref="ModelZoo"/> model into the shapes real exporters write, to test the toolchain on them
/// without third-party files: weights in <c>Constant</c> nodes (paddle2onnx, spox), nodes out of order, the whole
/// network inside the branches of an <c>If</c> chosen by an int64 scalar input (silero VAD v5), float16 weights read
/// through <c>Cast</c> (fp16 converters), and extra inputs of other types.
/// </summary>
public static class ExporterStyle
{
    /// <summary>Every float initializer becomes a <c>Constant</c> node; with <paramref name="reversed"/> the nodes are written in reverse order.</summary>
    public static byte[] ConstantWeights(byte[] model, bool reversed = false)
    {
        var m = ModelProto.Parser.ParseFrom(model);
        ToConstants(m.Graph);
        if (reversed)
        {
            var nodes = m.Graph.Node.Reverse().ToList();
            m.Graph.Node.Clear();
            m.Graph.Node.AddRange(nodes);
        }

        return m.ToByteArray();
    }

    private static void ToConstants(GraphProto g)
    {
        var constants = g.Initializer.Where(t => t.DataType == (int)TensorProto.Types.DataType.Float).Select(t =>
        {
            var n = new NodeProto { OpType = "Constant", Name = $"const_{t.Name}" };
            n.Output.Add(t.Name);
            n.Attribute.Add(new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = t.Clone() });
            return n;
        }).ToList();
        foreach (var t in g.Initializer.Where(t => t.DataType == (int)TensorProto.Types.DataType.Float).ToList()) g.Initializer.Remove(t);
        var all = constants.Concat(g.Node).ToList();
        g.Node.Clear();
        g.Node.AddRange(all);
    }

    /// <summary>
    /// Two models with the same inputs and outputs as the branches of an <c>If</c>: <c>sr == 16000</c> (an int64 scalar
    /// input <c>sr</c>) runs <paramref name="then"/>, else <paramref name="otherwise"/>. Branch weights are <c>Constant</c>
    /// nodes inside the branches, except the first weight of <paramref name="then"/>, which stays an initializer of the
    /// outer graph that the branch reads (as torch.onnx writes it).
    /// </summary>
    public static byte[] IfOnSampleRate(byte[] then, byte[] otherwise)
    {
        var a = ModelProto.Parser.ParseFrom(then);
        var b = ModelProto.Parser.ParseFrom(otherwise);
        var outer = new GraphProto { Name = "if_model" };
        outer.Input.AddRange(a.Graph.Input);
        outer.Input.Add(new ValueInfoProto { Name = "sr", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Int64, Shape = new TensorShapeProto() } } });
        outer.Output.AddRange(a.Graph.Output);
        var inputs = a.Graph.Input.Select(i => i.Name).ToHashSet();
        var shared = a.Graph.Initializer.First(t => t.DataType == (int)TensorProto.Types.DataType.Float);
        var sharedName = "outer_" + shared.Name;
        var thenGraph = Branch(a.Graph, "then_", inputs);
        var moved = thenGraph.Initializer.First(t => t.Name == "then_" + shared.Name);
        thenGraph.Initializer.Remove(moved);
        moved.Name = sharedName;
        outer.Initializer.Add(moved);
        foreach (var n in thenGraph.Node) for (var i = 0; i < n.Input.Count; i++) if (n.Input[i] == "then_" + shared.Name) n.Input[i] = sharedName;
        var elseGraph = Branch(b.Graph, "else_", inputs);
        ToConstants(thenGraph);
        ToConstants(elseGraph);
        var rate = new TensorProto { Name = "rate_16k", DataType = (int)TensorProto.Types.DataType.Int64 };
        rate.Int64Data.Add(16000);
        outer.Initializer.Add(rate);
        outer.Node.Add(Node("Equal", "is_16k", ["sr", "rate_16k"], ["is_16k_out"]));
        var ifNode = Node("If", "branch_on_rate", ["is_16k_out"], a.Graph.Output.Select(o => o.Name).ToArray());
        ifNode.Attribute.Add(new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = thenGraph });
        ifNode.Attribute.Add(new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = elseGraph });
        outer.Node.Add(ifNode);
        var m = new ModelProto { IrVersion = a.IrVersion, ProducerName = "edgeml-exporter-style", Graph = outer };
        m.OpsetImport.AddRange(a.OpsetImport);
        return m.ToByteArray();
    }

    /// <summary>The graph as a branch: no inputs (it reads the outer ones), every other name prefixed.</summary>
    private static GraphProto Branch(GraphProto g, string prefix, HashSet<string> outerInputs)
    {
        var b = g.Clone();
        b.Name = prefix + "branch";
        b.Input.Clear();
        string Rename(string x) => x.Length == 0 || outerInputs.Contains(x) ? x : prefix + x;
        foreach (var t in b.Initializer) t.Name = Rename(t.Name);
        foreach (var n in b.Node)
        {
            n.Name = prefix + n.Name;
            for (var i = 0; i < n.Input.Count; i++) n.Input[i] = Rename(n.Input[i]);
            for (var i = 0; i < n.Output.Count; i++) n.Output[i] = Rename(n.Output[i]);
        }

        foreach (var o in b.Output) o.Name = Rename(o.Name);
        return b;
    }

    /// <summary>Every float initializer stored as float16 and read through a <c>Cast(to=float)</c>, as fp16 converters write models.</summary>
    public static byte[] Float16Weights(byte[] model)
    {
        var m = ModelProto.Parser.ParseFrom(model);
        var casts = new List<NodeProto>();
        foreach (var t in m.Graph.Initializer.Where(t => t.DataType == (int)TensorProto.Types.DataType.Float).ToList())
        {
            var values = t.FloatData.Count > 0 ? t.FloatData.ToArray() : System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray();
            var half = values.Select(v => (Half)v).ToArray();
            var name = t.Name;
            t.Name = name + "_fp16";
            t.DataType = (int)TensorProto.Types.DataType.Float16;
            t.FloatData.Clear();
            t.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(half.AsSpan()));
            var cast = Node("Cast", $"cast_{name}", [t.Name], [name]);
            cast.Attribute.Add(new AttributeProto { Name = "to", Type = AttributeProto.Types.AttributeType.Int, I = (int)TensorProto.Types.DataType.Float });
            casts.Add(cast);
        }

        var all = casts.Concat(m.Graph.Node).ToList();
        m.Graph.Node.Clear();
        m.Graph.Node.AddRange(all);
        return m.ToByteArray();
    }

    /// <summary>The model computing in float16: float16 weights, inputs and outputs, no Casts (to be refused by a float32 quantizer).</summary>
    public static byte[] Float16Computation(byte[] model)
    {
        var m = ModelProto.Parser.ParseFrom(Float16Weights(model));
        foreach (var cast in m.Graph.Node.Where(n => n.OpType == "Cast").ToList())
        {
            foreach (var n in m.Graph.Node) for (var i = 0; i < n.Input.Count; i++) if (n.Input[i] == cast.Output[0]) n.Input[i] = cast.Input[0];
            m.Graph.Node.Remove(cast);
        }

        foreach (var v in m.Graph.Input.Concat(m.Graph.Output)) v.Type.TensorType.ElemType = (int)TensorProto.Types.DataType.Float16;
        return m.ToByteArray();
    }

    private static NodeProto Node(string op, string name, string[] inputs, string[] outputs)
    {
        var n = new NodeProto { OpType = op, Name = name };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        return n;
    }
}
