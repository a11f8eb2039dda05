using System.Globalization;

namespace EdgeMl.Protocol.Packages;

/// <summary>A model input or output as the model itself declares it (read by ONNX Runtime, or from the ONNX graph).</summary>
/// <param name="IsTensor">false for sequences and maps (<paramref name="ElementType"/> then names the value type)</param>
/// <param name="Dimensions">-1 (or 0) for a free dimension</param>
/// <param name="Symbolic">names of free dimensions, where the model gives them</param>
public sealed record ModelTensor(bool IsTensor, string ElementType, long[] Dimensions, string[] Symbolic)
{
    public string Describe() =>
        IsTensor
            ? $"{ElementType}[{string.Join(", ", Dimensions.Select((d, i) => d > 0 ? d.ToString(CultureInfo.InvariantCulture) : Symbolic.Length > i && Symbolic[i].Length > 0 ? Symbolic[i] : "?"))}]"
            : ElementType;
}

/// <summary>
/// Compares a manifest with the model's real inputs and outputs: every model input must be fed (a manifest input or
/// a state tensor), every declared output must exist, element types and fixed dimensions must agree. All mismatches
/// are reported at once. The agent checks a package with it before running it; <c>edgeml model package</c> before
/// writing one.
/// </summary>
public static class ModelInterfaceCheck
{
    public static List<string> Compare(ModelManifest manifest, IReadOnlyDictionary<string, ModelTensor> modelInputs, IReadOnlyDictionary<string, ModelTensor> modelOutputs)
    {
        var errors = new List<string>();
        var fed = new HashSet<string>(StringComparer.Ordinal);

        for (var i = 0; i < manifest.Inputs.Count; i++)
        {
            var input = manifest.Inputs[i];
            fed.Add(input.Name);
            CheckTensor($"inputs[{i}]", input.Name, input.Shape, ElementTypes.Float32, modelInputs, "input", errors);
        }

        for (var i = 0; i < manifest.State.Count; i++)
        {
            var s = manifest.State[i];
            fed.Add(s.Input);
            CheckTensor($"state[{i}].input", s.Input, s.Shape, s.Type, modelInputs, "input", errors);
            CheckTensor($"state[{i}].output", s.Output, s.Shape, s.Type, modelOutputs, "output", errors);
        }

        for (var i = 0; i < manifest.Constants.Count; i++)
        {
            var c = manifest.Constants[i];
            fed.Add(c.Name);
            CheckTensor($"constants[{i}]", c.Name, c.Shape, c.Type, modelInputs, "input", errors);
        }

        foreach (var name in modelInputs.Keys.Where(n => !fed.Contains(n)))
        {
            errors.Add($"model input '{name}' {modelInputs[name].Describe()} is not declared in the manifest (neither in inputs, state nor constants)");
        }

        for (var i = 0; i < manifest.Outputs.Count; i++)
        {
            var output = manifest.Outputs[i];
            CheckTensor($"outputs[{i}]", output.Name, output.Shape, ElementTypes.Float32, modelOutputs, "output", errors);
        }

        return errors;
    }

    private static void CheckTensor(string at, string name, List<long> declared, string type, IReadOnlyDictionary<string, ModelTensor> actual, string what, List<string> errors)
    {
        if (!actual.TryGetValue(name, out var meta))
        {
            errors.Add($"{at}: the model has no {what} named '{name}' (its {what}s: {string.Join(", ", actual.Keys.Select(k => $"'{k}'"))})");
            return;
        }

        if (!meta.IsTensor || meta.ElementType != type)
        {
            errors.Add($"{at}: model {what} '{name}' is {meta.Describe()}, the manifest declares {type}");
            return;
        }

        var dims = meta.Dimensions;
        if (dims.Length != declared.Count)
        {
            errors.Add($"{at}: model {what} '{name}' has shape {meta.Describe()} (rank {dims.Length}), the manifest declares [{string.Join(", ", declared)}] (rank {declared.Count})");
            return;
        }

        for (var d = 0; d < dims.Length; d++)
        {
            if (dims[d] > 0 && declared[d] > 0 && dims[d] != declared[d])
            {
                errors.Add($"{at}: model {what} '{name}' has shape {meta.Describe()}, the manifest declares [{string.Join(", ", declared)}] (dimension {d} differs)");
                return;
            }
        }
    }
}
