using EdgeMl.Protocol.Packages;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeMl.Agent.Inference;

/// <summary>
/// Compares a manifest with the model's real inputs and outputs, as ONNX Runtime reads them from the
/// graph: every model input must be fed (a manifest input or a state tensor), every declared output
/// must exist, element types and fixed dimensions must agree. All mismatches are reported at once.
/// </summary>
public static class ManifestModelCheck
{
    public static List<string> Compare(
        ModelManifest manifest,
        IReadOnlyDictionary<string, NodeMetadata> modelInputs,
        IReadOnlyDictionary<string, NodeMetadata> modelOutputs)
    {
        var errors = new List<string>();
        var fed = new HashSet<string>(StringComparer.Ordinal);

        for (var i = 0; i < manifest.Inputs.Count; i++)
        {
            var input = manifest.Inputs[i];
            fed.Add(input.Name);
            CheckTensor($"inputs[{i}]", input.Name, input.Shape, modelInputs, "input", errors);
        }

        for (var i = 0; i < manifest.State.Count; i++)
        {
            var s = manifest.State[i];
            fed.Add(s.Input);
            CheckTensor($"state[{i}].input", s.Input, s.Shape, modelInputs, "input", errors);
            CheckTensor($"state[{i}].output", s.Output, s.Shape, modelOutputs, "output", errors);
        }

        foreach (var name in modelInputs.Keys.Where(n => !fed.Contains(n)))
        {
            errors.Add($"model input '{name}' {Describe(modelInputs[name])} is not declared in the manifest (neither in inputs nor in state)");
        }

        for (var i = 0; i < manifest.Outputs.Count; i++)
        {
            var output = manifest.Outputs[i];
            CheckTensor($"outputs[{i}]", output.Name, output.Shape, modelOutputs, "output", errors);
        }

        return errors;
    }

    private static void CheckTensor(
        string at, string name, List<long> declared, IReadOnlyDictionary<string, NodeMetadata> actual, string what, List<string> errors)
    {
        if (!actual.TryGetValue(name, out var meta))
        {
            errors.Add($"{at}: the model has no {what} named '{name}' (its {what}s: {string.Join(", ", actual.Keys.Select(k => $"'{k}'"))})");
            return;
        }

        if (!meta.IsTensor || meta.ElementDataType != TensorElementType.Float)
        {
            errors.Add($"{at}: model {what} '{name}' is {Describe(meta)}, the manifest declares float32");
            return;
        }

        var dims = meta.Dimensions;
        if (dims.Length != declared.Count)
        {
            errors.Add($"{at}: model {what} '{name}' has shape {Describe(meta)} (rank {dims.Length}), the manifest declares [{string.Join(", ", declared)}] (rank {declared.Count})");
            return;
        }

        for (var d = 0; d < dims.Length; d++)
        {
            if (dims[d] > 0 && declared[d] > 0 && dims[d] != declared[d])
            {
                errors.Add($"{at}: model {what} '{name}' has shape {Describe(meta)}, the manifest declares [{string.Join(", ", declared)}] (dimension {d} differs)");
                return;
            }
        }
    }

    private static string Describe(NodeMetadata m) =>
        m.IsTensor
            ? $"{ElementName(m.ElementDataType)}[{string.Join(", ", m.Dimensions.Select((d, i) => d > 0 ? d.ToString(System.Globalization.CultureInfo.InvariantCulture) : (m.SymbolicDimensions.Length > i && m.SymbolicDimensions[i].Length > 0 ? m.SymbolicDimensions[i] : "?")))}]"
            : m.OnnxValueType.ToString();

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
