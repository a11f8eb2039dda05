using System.Globalization;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.ModelTools.Data;

/// <summary>One set of model inputs (name → values and shape), batch 1.</summary>
public sealed class Sample
{
    /// <summary>The file it came from (CSV data: its name may carry the class, <c>LABEL-….csv</c>).</summary>
    public string? Source { get; set; }

    public Dictionary<string, (float[] Data, long[] Shape)> Inputs { get; } = new(StringComparer.Ordinal);
}

/// <summary>A model input as the graph declares it (-1: a free dimension).</summary>
public sealed record ModelInput(string Name, long[] Shape);

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

        var counts = new Dictionary<string, (long N, bool ExtraAxis)>();
        foreach (var (name, array) in byInput)
        {
            var input = inputs.First(i => i.Name == name);
            counts[name] = Fit(path, name, array, input);
        }

        var n = counts.Values.Select(c => c.N).Distinct().ToList();
        if (n.Count > 1) throw new ModelToolException($"{path}: the arrays hold different numbers of samples ({string.Join(", ", counts.Select(c => $"{c.Key}: {c.Value.N}"))})");
        foreach (var missing in inputs.Where(i => !byInput.ContainsKey(i.Name)))
        {
            if (missing.Shape.Any(d => d < 0) && missing.Shape.Skip(1).Any(d => d < 0)) throw new ModelToolException($"{path}: no data for input '{missing.Name}', and its shape has free dimensions");
            notes?.Add($"input '{missing.Name}' has no data in {Path.GetFileName(path)}: fed zeros (a recurrent state starts at zero)");
        }

        var samples = new List<Sample>();
        for (var k = 0; k < Math.Min(n[0], limit); k++)
        {
            var s = new Sample();
            foreach (var input in inputs)
            {
                if (!byInput.TryGetValue(input.Name, out var array))
                {
                    var shape = input.Shape.Select(d => d > 0 ? d : 1).ToArray();
                    s.Inputs[input.Name] = (new float[shape.Aggregate(1L, (a, b) => a * b)], shape);
                    continue;
                }

                var row = array.RowLength;
                var data = array.Data.AsSpan(k * row, row).ToArray();
                var sampleShape = counts[input.Name].ExtraAxis ? array.Shape[1..] : [1, .. array.Shape[1..]];
                s.Inputs[input.Name] = (data, sampleShape);
            }

            samples.Add(s);
        }

        return samples;
    }

    /// <summary>How many samples the array holds for the input, or a clear error naming both shapes.</summary>
    private static (long N, bool ExtraAxis) Fit(string path, string name, NdArray array, ModelInput input)
    {
        static bool Match(ReadOnlySpan<long> data, ReadOnlySpan<long> model)
        {
            if (data.Length != model.Length) return false;
            for (var i = 0; i < data.Length; i++) if (model[i] > 0 && data[i] != model[i]) return false;
            return true;
        }

        var s = array.Shape;
        if (s.Length == input.Shape.Length + 1 && Match(s.AsSpan(1), input.Shape)) return (s[0], true);
        if (s.Length == input.Shape.Length && s.Length > 0 && Match(s.AsSpan(1), input.Shape.AsSpan(1)) && input.Shape[0] is 1 or -1) return (s[0], false);
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
                s.Inputs[spec.Name] = (data, model.Shape.Select(d => d > 0 ? d : 1).ToArray());
            }

            yield return s;
        }
    }
}
