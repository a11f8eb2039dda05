using System.Globalization;
using EdgeMl.Protocol.Packages;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeMl.ModelTools.Data;

/// <summary>One set of model inputs (name → values and shape), batch 1.</summary>
public sealed class Sample
{
    /// <summary>The file it came from (CSV data: its name may carry the class, <c>LABEL-….csv</c>).</summary>
    public string? Source { get; set; }

    public Dictionary<string, SampleTensor> Inputs { get; } = new(StringComparer.Ordinal);

    /// <summary>The inputs as ONNX Runtime values (the caller disposes them), in the order of <paramref name="names"/>.</summary>
    public OrtValue[] ToOrtValues(IReadOnlyList<string> names) => names.Select(n => Inputs[n].ToOrtValue()).ToArray();
}

/// <summary>
/// One input's values for one sample, in the element type the model declares (<c>float[]</c>, <c>long[]</c>,
/// <c>int[]</c>, <c>bool[]</c>, <c>Float16[]</c>, <c>double[]</c>, <c>byte[]</c>, <c>sbyte[]</c>) and its full shape.
/// </summary>
public sealed record SampleTensor(Array Data, long[] Shape)
{
    public static implicit operator SampleTensor((float[] Data, long[] Shape) t) => new(t.Data, t.Shape);

    /// <summary>Values converted to <paramref name="type"/> (from NumPy's exact float64 values).</summary>
    public static SampleTensor Of(ReadOnlySpan<double> values, long[] shape, TensorElementType type, string what) => new(type switch
    {
        TensorElementType.Float => Convert(values, v => (float)v),
        TensorElementType.Double => values.ToArray(),
        TensorElementType.Int64 => Convert(values, v => (long)v),
        TensorElementType.Int32 => Convert(values, v => (int)v),
        TensorElementType.Bool => Convert(values, v => v != 0),
        TensorElementType.Float16 => Convert(values, v => (Float16)(float)v),
        TensorElementType.UInt8 => Convert(values, v => (byte)v),
        TensorElementType.Int8 => Convert(values, v => (sbyte)v),
        _ => throw new ModelToolException($"{what}: model input of type {type} cannot be fed from data here (float32/64, float16, int64, int32, int8, uint8, bool)"),
    }, shape);

    /// <summary>
    /// A manifest's constant or state value: element type as the manifest names it (<see cref="ElementTypes"/>), no
    /// values (zeros), one (every element) or one per element.
    /// </summary>
    public static SampleTensor Of(string elementType, IReadOnlyList<double> values, long[] shape, string what)
    {
        var n = shape.Aggregate(1L, (a, b) => a * b);
        var all = new double[n];
        for (var i = 0; i < n; i++) all[i] = values.Count == 0 ? 0 : values.Count == 1 ? values[0] : values[i];
        var type = elementType switch
        {
            "float32" => TensorElementType.Float,
            "float64" => TensorElementType.Double,
            "float16" => TensorElementType.Float16,
            "int64" => TensorElementType.Int64,
            "int32" => TensorElementType.Int32,
            "int8" => TensorElementType.Int8,
            "uint8" => TensorElementType.UInt8,
            "bool" => TensorElementType.Bool,
            _ => throw new ModelToolException($"{what}: element type '{elementType}' cannot be fed here (float32/64, float16, int64, int32, int8, uint8, bool)"),
        };
        return Of(all, shape, type, what);
    }

    /// <summary>A copy of an ONNX Runtime tensor's values and shape (a model's state output, fed back on the next call).</summary>
    public static SampleTensor Copy(OrtValue value)
    {
        var info = value.GetTensorTypeAndShape();
        var shape = info.Shape;
        return info.ElementDataType switch
        {
            TensorElementType.Float => new(value.GetTensorDataAsSpan<float>().ToArray(), shape),
            TensorElementType.Double => new(value.GetTensorDataAsSpan<double>().ToArray(), shape),
            TensorElementType.Int64 => new(value.GetTensorDataAsSpan<long>().ToArray(), shape),
            TensorElementType.Int32 => new(value.GetTensorDataAsSpan<int>().ToArray(), shape),
            TensorElementType.Bool => new(value.GetTensorDataAsSpan<bool>().ToArray(), shape),
            TensorElementType.Float16 => new(value.GetTensorDataAsSpan<Float16>().ToArray(), shape),
            TensorElementType.UInt8 => new(value.GetTensorDataAsSpan<byte>().ToArray(), shape),
            TensorElementType.Int8 => new(value.GetTensorDataAsSpan<sbyte>().ToArray(), shape),
            var t => throw new ModelToolException($"a model output of type {t} cannot be carried as state here"),
        };
    }

    /// <summary>Zeros of <paramref name="type"/>.</summary>
    public static SampleTensor Zeros(long[] shape, TensorElementType type, string what) =>
        Of(new double[shape.Aggregate(1L, (a, b) => a * b)], shape, type, what);

    private static T[] Convert<T>(ReadOnlySpan<double> values, Func<double, T> f)
    {
        var r = new T[values.Length];
        for (var i = 0; i < r.Length; i++) r[i] = f(values[i]);
        return r;
    }

    /// <summary>The values as float32 (for statistics).</summary>
    public float[] Floats() => Data switch
    {
        float[] f => f,
        double[] d => d.Select(v => (float)v).ToArray(),
        long[] l => l.Select(v => (float)v).ToArray(),
        int[] i => i.Select(v => (float)v).ToArray(),
        bool[] b => b.Select(v => v ? 1f : 0f).ToArray(),
        Float16[] h => h.Select(v => (float)v).ToArray(),
        byte[] u => u.Select(v => (float)v).ToArray(),
        sbyte[] s => s.Select(v => (float)v).ToArray(),
        _ => throw new InvalidOperationException(Data.GetType().Name),
    };

    /// <summary>An ONNX Runtime value over <see cref="Data"/> (no copy); the caller disposes it.</summary>
    public OrtValue ToOrtValue() => Data switch
    {
        float[] f => OrtValue.CreateTensorValueFromMemory(f, Shape),
        double[] d => OrtValue.CreateTensorValueFromMemory(d, Shape),
        long[] l => OrtValue.CreateTensorValueFromMemory(l, Shape),
        int[] i => OrtValue.CreateTensorValueFromMemory(i, Shape),
        bool[] b => OrtValue.CreateTensorValueFromMemory(b, Shape),
        Float16[] h => OrtValue.CreateTensorValueFromMemory(h, Shape),
        byte[] u => OrtValue.CreateTensorValueFromMemory(u, Shape),
        sbyte[] s => OrtValue.CreateTensorValueFromMemory(s, Shape),
        _ => throw new InvalidOperationException(Data.GetType().Name),
    };

    public override string ToString() => $"{Data.GetType().GetElementType()!.Name.ToLowerInvariant()} [{string.Join(",", Shape)}]";
}

/// <summary>A model input as the graph declares it (-1: a free dimension) and its element type.</summary>
public sealed record ModelInput(string Name, long[] Shape, TensorElementType Type = TensorElementType.Float)
{
    public static ModelInput Of(Onnx.ValueInfoProto v) => new(v.Name, OnnxGraph.Shape(v), (TensorElementType)(v.Type?.TensorType?.ElemType ?? 1));

    public static List<ModelInput> Of(InferenceSession session) =>
        session.InputMetadata.Select(kv => new ModelInput(kv.Key, kv.Value.Dimensions.Select(d => (long)d).ToArray(), kv.Value.ElementDataType)).ToList();
}

/// <summary>
/// Data an ML engineer already has, cut into model inputs: NumPy <c>.npy</c> (one input) or <c>.npz</c> (arrays named
/// after the inputs), either with a leading sample axis in place of the batch axis (<c>[N, …]</c> for an input
/// <c>[1, …]</c>) or with one extra leading axis (<c>[N, …model shape]</c>); or a CSV of sensor samples whose columns
/// are named after channels, windowed as the manifest says (window, hop, layout, normalization).
/// </summary>
public static class SampleSet
{
    public static List<Sample> Load(string path, IReadOnlyList<ModelInput> inputs, ModelManifest? manifest, int limit, List<string>? notes = null)
    {
        if (path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase) || Directory.Exists(path))
        {
            if (manifest is null) throw new ModelToolException($"{path}: CSV sensor data needs a manifest (--manifest FILE, or a .edgepkg) that says how samples become windows");
            var files = Directory.Exists(path) ? Directory.GetFiles(path, "*.csv").Order(StringComparer.Ordinal).ToArray() : [path];
            if (files.Length == 0) throw new ModelToolException($"{path}: no .csv files");
            var result = new List<Sample>();
            foreach (var f in files)
            {
                result.AddRange(Csv(f, inputs, manifest, limit - result.Count));
                if (result.Count >= limit) break;
            }

            return result;
        }

        var arrays = NumPy.Load(path);
        var byInput = new Dictionary<string, NdArray>(StringComparer.Ordinal);
        if (arrays.Count == 1 && !inputs.Any(i => arrays.ContainsKey(i.Name)))
        {
            byInput[inputs[0].Name] = arrays.Values.First();
        }
        else
        {
            foreach (var (name, array) in arrays)
            {
                if (inputs.All(i => i.Name != name)) throw new ModelToolException($"{path}: array '{name}' matches no model input (inputs: {string.Join(", ", inputs.Select(i => i.Name))})");
                byInput[name] = array;
            }
        }

        var counts = new Dictionary<string, (long N, long[] SampleShape)>();
        foreach (var (name, array) in byInput)
        {
            var input = inputs.First(i => i.Name == name);
            counts[name] = Fit(path, name, array, input);
        }

        // An array that fits one sample (a scalar such as a sample rate, a start state) is given once for all samples.
        var n = counts.Values.Select(c => c.N).DefaultIfEmpty(1).Max();
        var uneven = counts.Where(c => c.Value.N != n && c.Value.N != 1).ToList();
        if (uneven.Count > 0) throw new ModelToolException($"{path}: the arrays hold different numbers of samples ({string.Join(", ", counts.Select(c => $"{c.Key}: {c.Value.N}"))}; an array for one sample is used for all)");
        foreach (var (name, c) in counts.Where(c => c.Value.N == 1 && n > 1)) notes?.Add($"input '{name}': one value [{string.Join(",", c.SampleShape)}] used for all {n} samples");
        foreach (var missing in inputs.Where(i => !byInput.ContainsKey(i.Name)))
        {
            if (missing.Shape.Any(d => d < 0) && missing.Shape.Skip(1).Any(d => d < 0)) throw new ModelToolException($"{path}: no data for input '{missing.Name}', and its shape has free dimensions (give it as an array named '{missing.Name}'; one sample's worth is used for all)");
            notes?.Add($"input '{missing.Name}' has no data in {Path.GetFileName(path)}: fed zeros (a recurrent state starts at zero)");
        }

        var samples = new List<Sample>();
        for (var k = 0; k < Math.Min(n, limit); k++)
        {
            var s = new Sample();
            foreach (var input in inputs)
            {
                if (!byInput.TryGetValue(input.Name, out var array))
                {
                    s.Inputs[input.Name] = SampleTensor.Zeros(input.Shape.Select(d => d > 0 ? d : 1).ToArray(), input.Type, $"{path}: input '{input.Name}'");
                    continue;
                }

                var (count, sampleShape) = counts[input.Name];
                var row = (int)(array.Values.Length / count);
                var at = count == 1 ? 0 : k * row;
                s.Inputs[input.Name] = SampleTensor.Of(array.Values.AsSpan(at, row), sampleShape, input.Type, $"{path}: array '{input.Name}'");
            }

            samples.Add(s);
        }

        return samples;
    }

    /// <summary>
    /// How many samples the array holds for the input and the shape of one sample (free dimensions from the data):
    /// (N, …model shape), (N, …model shape without its batch axis of 1 or ?), or exactly one sample (the model's shape,
    /// a scalar included). Else a clear error naming both shapes.
    /// </summary>
    private static (long N, long[] SampleShape) Fit(string path, string name, NdArray array, ModelInput input)
    {
        static bool Match(ReadOnlySpan<long> data, ReadOnlySpan<long> model)
        {
            if (data.Length != model.Length) return false;
            for (var i = 0; i < data.Length; i++) if (model[i] > 0 && data[i] != model[i]) return false;
            return true;
        }

        var s = array.Shape;
        if (s.Length == input.Shape.Length + 1 && Match(s.AsSpan(1), input.Shape)) return (s[0], s[1..]);
        if (s.Length == input.Shape.Length && s.Length > 0 && Match(s.AsSpan(1), input.Shape.AsSpan(1)) && input.Shape[0] is 1 or -1) return (s[0], [1, .. s[1..]]);
        if (Match(s, input.Shape)) return (1, s);
        throw new ModelToolException($"{path}: array '{name}' has shape ({string.Join(", ", s)}), which does not fit model input '{input.Name}' " +
            $"[{string.Join(", ", input.Shape.Select(d => d > 0 ? d.ToString(CultureInfo.InvariantCulture) : "?"))}] (expected (N, {string.Join(", ", input.Shape.Skip(1).Select(d => d > 0 ? d.ToString(CultureInfo.InvariantCulture) : "?"))}) or (N, {string.Join(", ", input.Shape.Select(d => d > 0 ? d.ToString(CultureInfo.InvariantCulture) : "?"))}))");
    }

    /// <summary>Windows of one CSV of sensor samples, as the agent would feed them (channels picked by name, normalized, laid out).</summary>
    private static IEnumerable<Sample> Csv(string file, IReadOnlyList<ModelInput> inputs, ModelManifest manifest, int limit)
    {
        using var reader = new StreamReader(file);
        var header = reader.ReadLine()?.Split(',').Select(h => h.Trim()).ToArray() ?? throw new ModelToolException($"{file}: empty");
        var rows = new List<float[]>();
        var line = 1;
        while (reader.ReadLine() is { } text)
        {
            line++;
            if (text.Length == 0) continue;
            var cells = text.Split(',');
            var row = new float[header.Length];
            for (var i = 0; i < header.Length && i < cells.Length; i++)
            {
                if (!float.TryParse(cells[i], NumberStyles.Float, CultureInfo.InvariantCulture, out row[i]))
                {
                    if (i == 0 && line == 2) continue; // a time column may be text
                    row[i] = float.NaN;
                }
            }

            rows.Add(row);
        }

        var specs = manifest.Inputs.Where(i => i.Source is not null).ToList();
        if (specs.Count == 0) throw new ModelToolException($"{file}: the manifest's inputs have no sensor source (channels, window, hop)");
        var columns = specs.Select(spec => spec.Source!.Channels.Select(ch =>
        {
            var k = Array.FindIndex(header, h => string.Equals(h, ch, StringComparison.OrdinalIgnoreCase));
            return k >= 0 ? k : throw new ModelToolException($"{file}: no column '{ch}' for input '{spec.Name}' (columns: {string.Join(", ", header)})");
        }).ToArray()).ToList();
        var window = specs[0].Source!.Window;
        var hop = specs[0].Source!.Hop;
        var produced = 0;
        for (var end = window; end <= rows.Count && produced < limit; end += hop, produced++)
        {
            var s = new Sample { Source = Path.GetFileName(file) };
            for (var i = 0; i < specs.Count; i++)
            {
                var spec = specs[i];
                var c = columns[i].Length;
                var data = new float[window * c];
                var first = spec.Source!.Layout == InputLayouts.ChannelsFirst;
                for (var t = 0; t < window; t++)
                {
                    for (var ch = 0; ch < c; ch++)
                    {
                        var v = rows[end - window + t][columns[i][ch]];
                        if (spec.Normalization is { } norm) v = (v - norm.Mean[ch]) / norm.Std[ch];
                        data[first ? ch * window + t : t * c + ch] = v;
                    }
                }

                var model = inputs.FirstOrDefault(x => x.Name == spec.Name) ?? throw new ModelToolException($"manifest input '{spec.Name}' is not an input of the model");
                // The manifest's shape is what the agent binds (a model may leave every dimension free, as silero does).
                var shape = spec.Shape.Count == model.Shape.Length
                    ? spec.Shape.Select((d, k) => d > 0 ? d : model.Shape[k] > 0 ? model.Shape[k] : 1).ToArray()
                    : model.Shape.Select(d => d > 0 ? d : 1).ToArray();
                if (shape.Aggregate(1L, (a, b) => a * b) != data.Length)
                {
                    throw new ModelToolException($"{file}: input '{spec.Name}' [{string.Join(", ", shape)}] does not hold one window of {c} channel(s) × {window} samples");
                }

                s.Inputs[spec.Name] = (data, shape);
            }

            yield return s;
        }
    }
}
