using EdgeMl.Protocol.Packages;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeMl.Agent.Inference;

/// <summary>
/// The manifest against the model's inputs and outputs as ONNX Runtime reads them from the graph
/// (<see cref="ModelInterfaceCheck"/> holds the rules; this maps ONNX Runtime's metadata to it).
/// </summary>
public static class ManifestModelCheck
{
    public static List<string> Compare(
        ModelManifest manifest,
        IReadOnlyDictionary<string, NodeMetadata> modelInputs,
        IReadOnlyDictionary<string, NodeMetadata> modelOutputs) =>
        ModelInterfaceCheck.Compare(manifest, modelInputs.ToDictionary(kv => kv.Key, kv => Tensor(kv.Value)), modelOutputs.ToDictionary(kv => kv.Key, kv => Tensor(kv.Value)));

    private static ModelTensor Tensor(NodeMetadata m) =>
        m.IsTensor
            ? new ModelTensor(true, ElementName(m.ElementDataType), m.Dimensions.Select(d => (long)d).ToArray(), m.SymbolicDimensions)
            : new ModelTensor(false, m.OnnxValueType.ToString(), [], []);

    private static string ElementName(TensorElementType t) => t switch
    {
        TensorElementType.Float => "float32",
        TensorElementType.Double => "float64",
        TensorElementType.Int64 => "int64",
        TensorElementType.Int32 => "int32",
        TensorElementType.UInt8 => "uint8",
        TensorElementType.Int8 => "int8",
        TensorElementType.Float16 => "float16",
        _ => t.ToString().ToLowerInvariant(),
    };
}
