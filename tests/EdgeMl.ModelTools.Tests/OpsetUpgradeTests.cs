using EdgeMl.TestUtilities;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;

namespace EdgeMl.ModelTools.Tests;

/// <summary>
/// Each op whose signature changed between opsets 9–12 and 13, in a one-op model at its old opset: the model lifted
/// to opset 13 gives the same outputs in ONNX Runtime as the original.
/// </summary>
public sealed class OpsetUpgradeTests
{
    private static AttributeProto Ints(string name, params long[] v)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(v);
        return a;
    }

    private static AttributeProto Floats(string name, params float[] v)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Floats };
        a.Floats.AddRange(v);
        return a;
    }

    private static AttributeProto Float(string name, float v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = v };

    /// <summary>x [1, 2, 4, 6] → one <paramref name="op"/> node (outputs y, y2 …) at <paramref name="opset"/>.</summary>
    private static OnnxGraph Model(int opset, string op, string[] extraInputs, int outputs, TensorProto[] constants, params AttributeProto[] attributes)
    {
        var g = new GraphProto { Name = op };
        g.Input.Add(new ValueInfoProto { Name = "x", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1, Shape = Shape(1, 2, 4, 6) } } });
        var outs = Enumerable.Range(0, outputs).Select(i => i == 0 ? "y" : $"y{i + 1}").ToArray();
        foreach (var o in outs) g.Output.Add(new ValueInfoProto { Name = o, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1 } } });
        g.Initializer.AddRange(constants);
        var n = OnnxGraph.Node(op, $"{op}_0", ["x", .. extraInputs], outs, attributes);
        g.Node.Add(n);
        var m = new ModelProto { IrVersion = 7, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        return OnnxGraph.Parse(m.ToByteArray(), $"{op}-{opset}");
    }

    private static TensorShapeProto Shape(params long[] dims)
    {
        var s = new TensorShapeProto();
        foreach (var d in dims) s.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return s;
    }

    public static TheoryData<string> Cases() => ["Resize10Nearest", "Resize10Linear", "Resize11", "Upsample9", "Slice9", "Squeeze11", "Unsqueeze11", "ReduceSum11", "Split11", "Clip9", "Pad9"];

    private static OnnxGraph Build(string name) => name switch
    {
        "Resize10Nearest" => Model(10, "Resize", ["s"], 1, [OnnxGraph.FloatTensor("s", [1, 1, 2, 1.5f], 4)], OnnxGraph.String("mode", "nearest")),
        "Resize10Linear" => Model(10, "Resize", ["s"], 1, [OnnxGraph.FloatTensor("s", [1, 1, 2, 2], 4)], OnnxGraph.String("mode", "linear")),
        "Resize11" => Model(11, "Resize", ["roi", "s"], 1, [OnnxGraph.FloatTensor("roi", [], 0), OnnxGraph.FloatTensor("s", [1, 1, 2, 2], 4)], OnnxGraph.String("mode", "linear")),
        "Upsample9" => Model(9, "Upsample", ["s"], 1, [OnnxGraph.FloatTensor("s", [1, 1, 2, 3], 4)], OnnxGraph.String("mode", "nearest")),
        "Slice9" => Model(9, "Slice", [], 1, [], Ints("starts", 1, 0), Ints("ends", 3, -1), Ints("axes", 2, 3)),
        "Squeeze11" => Model(11, "Squeeze", [], 1, [], Ints("axes", 0)),
        "Unsqueeze11" => Model(11, "Unsqueeze", [], 1, [], Ints("axes", 0, 3)),
        "ReduceSum11" => Model(11, "ReduceSum", [], 1, [], Ints("axes", 1, 3), OnnxGraph.Int("keepdims", 0)),
        "Split11" => Model(11, "Split", [], 2, [], OnnxGraph.Int("axis", 3), Ints("split", 2, 4)),
        "Clip9" => Model(9, "Clip", [], 1, [], Float("min", -0.5f), Float("max", 0.7f)),
        "Pad9" => Model(9, "Pad", [], 1, [], Ints("pads", 0, 0, 1, 2, 0, 0, 2, 1), Float("value", 0.25f)),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void The_upgraded_model_gives_the_same_outputs_as_the_original(string name)
    {
        var original = Build(name);
        var before = Run(original);
        var notes = new List<string>();
        OpsetUpgrade.Apply(original, notes);
        Assert.Equal(13, original.Opset);
        Assert.Contains(notes, n => n.Contains("upgraded to 13", StringComparison.Ordinal));
        Assert.DoesNotContain(original.Graph.Node[0].Attribute, a => a.Name is "axes" or "starts" or "ends" or "split" or "pads" or "min" or "max" or "scales");
        var after = Run(original);
        Assert.Equal(before.Length, after.Length);
        for (var i = 0; i < before.Length; i++) Assert.Equal(before[i], after[i]);
    }

    [Fact]
    public void An_op_the_upgrade_does_not_know_is_refused_naming_it()
    {
        var g = Model(11, "Resize", ["roi", "s"], 1, [OnnxGraph.FloatTensor("roi", [], 0), OnnxGraph.FloatTensor("s", [1, 1, 2, 2], 4)],
            OnnxGraph.String("mode", "nearest"), OnnxGraph.String("coordinate_transformation_mode", "tf_half_pixel_for_nn"));
        var e = Assert.Throws<ModelToolException>(() => OpsetUpgrade.Apply(g, []));
        Assert.Contains("tf_half_pixel_for_nn", e.Message, StringComparison.Ordinal);
        g = Model(9, "Scatter", ["i", "u"], 1, [OnnxGraph.Int64Tensor("i", [0], 1, 1, 1, 1), OnnxGraph.FloatTensor("u", [1], 1, 1, 1, 1)]);
        e = Assert.Throws<ModelToolException>(() => OpsetUpgrade.Apply(g, []));
        Assert.Contains("cannot be upgraded safely here: Scatter", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Outputs (flattened, then shapes) on a fixed input.</summary>
    private static string[] Run(OnnxGraph g)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        using var session = OnnxGraph.OpenSession(g.Model, options, g.Source);
        var x = ModelZoo.Normal(9, 48);
        using var value = OrtValue.CreateTensorValueFromMemory(x, [1, 2, 4, 6]);
        using var run = new RunOptions();
        using var results = session.Run(run, ["x"], [value], session.OutputNames);
        return results.SelectMany(r => new[]
        {
            string.Join(",", r.GetTensorTypeAndShape().Shape),
            string.Join(",", r.GetTensorDataAsSpan<float>().ToArray().Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture))),
        }).ToArray();
    }
}
