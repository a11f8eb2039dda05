using Google.Protobuf;
using Onnx;

namespace EdgeMl.TestUtilities;

/// <summary>
/// Builds small real ONNX models in tests (a tiny recurrent cell, a model with a given input shape),
/// written as protobuf through OnnxSharp's generated ONNX classes and loaded by the real ONNX Runtime.
/// </summary>
public sealed class OnnxModelBuilder
{
    private readonly GraphProto _graph = new() { Name = "test" };

    public OnnxModelBuilder Input(string name, params long[] shape)
    {
        _graph.Input.Add(ValueInfo(name, shape));
        return this;
    }

    /// <summary>An input of another element type than float32 (an empty <paramref name="shape"/> is a scalar).</summary>
    public OnnxModelBuilder Input(string name, TensorProto.Types.DataType type, params long[] shape)
    {
        _graph.Input.Add(ValueInfo(name, shape, type));
        return this;
    }

    public OnnxModelBuilder Output(string name, params long[] shape)
    {
        _graph.Output.Add(ValueInfo(name, shape));
        return this;
    }

    /// <summary>An output of another element type than float32.</summary>
    public OnnxModelBuilder Output(string name, TensorProto.Types.DataType type, params long[] shape)
    {
        _graph.Output.Add(ValueInfo(name, shape, type));
        return this;
    }

    public OnnxModelBuilder Constant(string name, long[] shape, params float[] values)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.AddRange(shape);
        t.FloatData.AddRange(values);
        _graph.Initializer.Add(t);
        return this;
    }

    public OnnxModelBuilder Node(string op, string[] inputs, string[] outputs, params (string Name, long Value)[] intAttributes)
    {
        var n = new NodeProto { OpType = op, Name = $"{op}_{_graph.Node.Count}" };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        foreach (var (attr, value) in intAttributes)
        {
            n.Attribute.Add(new AttributeProto { Name = attr, Type = AttributeProto.Types.AttributeType.Int, I = value });
        }

        _graph.Node.Add(n);
        return this;
    }

    public OnnxModelBuilder Node(string op, string[] inputs, string[] outputs, string listAttribute, long[] values, params (string Name, long Value)[] intAttributes)
    {
        Node(op, inputs, outputs, intAttributes);
        var a = new AttributeProto { Name = listAttribute, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        _graph.Node[^1].Attribute.Add(a);
        return this;
    }

    public byte[] Build(int opset = 13)
    {
        var model = new ModelProto { IrVersion = 7, ProducerName = "edgeml-tests", Graph = _graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        return model.ToByteArray();
    }

    private static ValueInfoProto ValueInfo(string name, long[] shape, TensorProto.Types.DataType type = TensorProto.Types.DataType.Float)
    {
        var tensorShape = new TensorShapeProto();
        foreach (var d in shape)
        {
            tensorShape.Dim.Add(d > 0 ? new TensorShapeProto.Types.Dimension { DimValue = d } : new TensorShapeProto.Types.Dimension { DimParam = "N" });
        }

        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = tensorShape } },
        };
    }
}
