namespace EdgeMl.Protocol.Packages;

/// <summary>
/// Checks a manifest for internal consistency. Every error names the field as a JSON path
/// (<c>inputs[0].normalization.std</c>) and says what was expected.
/// </summary>
public static class ManifestValidator
{
    public static List<string> Validate(ModelManifest m)
    {
        var errors = new List<string>();
        if (m.SchemaVersion != ModelManifest.CurrentSchemaVersion)
        {
            errors.Add($"schemaVersion: {m.SchemaVersion} is not supported (this build reads {ModelManifest.CurrentSchemaVersion})");
        }

        if (string.IsNullOrWhiteSpace(m.Name)) errors.Add("name: must not be empty");
        // The name and version end up in logs, health reports, metrics labels and NAME@VERSION references: no control
        // characters (a line feed would forge a log line), no '@', at most 128 characters.
        else if (m.Name.Length > 128 || m.Name.Any(c => char.IsControl(c) || c == '@')) errors.Add("name: must be at most 128 characters, without control characters or '@'");
        if (!IsSemVer(m.Version)) errors.Add($"version: '{Printable(m.Version)}' is not a semantic version (MAJOR.MINOR.PATCH, then -PRERELEASE and +BUILD of A-Z a-z 0-9 . -)");
        if (m.Inputs.Count == 0) errors.Add("inputs: at least one input is required");
        if (m.Outputs.Count == 0) errors.Add("outputs: at least one output is required");

        for (var i = 0; i < m.Inputs.Count; i++)
        {
            ValidateInput(m.Inputs[i], $"inputs[{i}]", errors);
        }

        for (var i = 0; i < m.Outputs.Count; i++)
        {
            ValidateOutput(m.Outputs[i], $"outputs[{i}]", errors);
        }

        for (var i = 0; i < m.State.Count; i++)
        {
            var s = m.State[i];
            var at = $"state[{i}]";
            if (string.IsNullOrWhiteSpace(s.Input)) errors.Add($"{at}.input: must name a model input");
            if (string.IsNullOrWhiteSpace(s.Output)) errors.Add($"{at}.output: must name a model output");
            ValidateShape(s.Shape, $"{at}.shape", errors, allowDynamic: false);
            var n = Elements(s.Shape);
            if (n > MaxStateElements)
            {
                errors.Add($"{at}.shape: {n} elements; a state tensor holds at most {MaxStateElements}");
            }
            else if (s.Initial.Count is not (0 or 1) && s.Initial.Count != n)
            {
                errors.Add($"{at}.initial: has {s.Initial.Count} values; expected 0 (zeros), 1 (fill) or {n} (one per element)");
            }

            ValidateValues(s.Type, s.Initial, $"{at}.initial", $"{at}.type", errors);
        }

        for (var i = 0; i < m.Constants.Count; i++)
        {
            var c = m.Constants[i];
            var at = $"constants[{i}]";
            if (string.IsNullOrWhiteSpace(c.Name)) errors.Add($"{at}.name: must name a model input");
            for (var d = 0; d < c.Shape.Count; d++)
            {
                if (c.Shape[d] <= 0) errors.Add($"{at}.shape[{d}]: {c.Shape[d]} is not a valid dimension (> 0; [] for a scalar)");
            }

            var n = c.Shape.All(d => d > 0) ? Elements(c.Shape) : 0;
            if (n > MaxConstantElements)
            {
                errors.Add($"{at}.shape: {n} elements; a constant input holds at most {MaxConstantElements}");
            }
            else if (c.Values.Count != 1 && c.Values.Count != n)
            {
                errors.Add($"{at}.values: has {c.Values.Count} values; expected 1 (every element) or {n} (one per element)");
            }

            ValidateValues(c.Type, c.Values, $"{at}.values", $"{at}.type", errors);
        }

        var names = m.Inputs.Select(x => x.Name).Concat(m.State.Select(s => s.Input)).Concat(m.Constants.Select(c => c.Name)).ToList();
        foreach (var dup in names.GroupBy(x => x).Where(g => g.Count() > 1))
        {
            errors.Add($"inputs: '{dup.Key}' is declared more than once");
        }

        return errors;
    }

    private static void ValidateInput(InputSpec input, string at, List<string> errors)
    {
        if (string.IsNullOrWhiteSpace(input.Name)) errors.Add($"{at}.name: must not be empty");
        if (input.Type != "float32") errors.Add($"{at}.type: '{input.Type}' is not supported for sensor inputs (expected float32)");
        ValidateShape(input.Shape, $"{at}.shape", errors, allowDynamic: true);

        var src = input.Source;
        if (src is null)
        {
            errors.Add($"{at}.source: required (which sensor channels feed this input, window and hop)");
            return;
        }

        if (src.Channels.Count == 0) errors.Add($"{at}.source.channels: at least one channel is required");
        if (src.Window <= 0) errors.Add($"{at}.source.window: must be > 0 samples");
        if (src.Hop <= 0) errors.Add($"{at}.source.hop: must be > 0 samples");
        if (src.SampleRateHz <= 0) errors.Add($"{at}.source.sampleRateHz: must be > 0");
        if (src.Layout is not (InputLayouts.ChannelsFirst or InputLayouts.ChannelsLast))
        {
            errors.Add($"{at}.source.layout: '{src.Layout}' is not one of channels_first, channels_last");
        }

        if (input.Shape.Count >= 2 && src.Channels.Count > 0 && src.Window > 0)
        {
            // The shape after the batch dimension must hold exactly channels x window values.
            var expected = (long)src.Channels.Count * src.Window;
            var perBatch = Elements(input.Shape.Skip(1).Select(d => d < 0 ? 1 : d).ToList());
            if (input.Shape.Skip(1).All(d => d > 0) && perBatch != expected)
            {
                errors.Add($"{at}.shape: [{string.Join(", ", input.Shape)}] holds {perBatch} values per batch item but {src.Channels.Count} channels x window {src.Window} = {expected}");
            }
        }

        if (input.Normalization is { } norm)
        {
            if (norm.Mean.Count != src.Channels.Count)
                errors.Add($"{at}.normalization.mean: has {norm.Mean.Count} values; expected one per channel ({src.Channels.Count})");
            if (norm.Std.Count != src.Channels.Count)
                errors.Add($"{at}.normalization.std: has {norm.Std.Count} values; expected one per channel ({src.Channels.Count})");
            for (var c = 0; c < norm.Std.Count; c++)
            {
                if (!(norm.Std[c] > 0)) errors.Add($"{at}.normalization.std[{c}]: must be > 0 (is {norm.Std[c]})");
            }
        }
    }

    /// <summary>Largest state tensor (elements): the agent holds two copies in memory (fed and produced).</summary>
    public const long MaxStateElements = 1 << 26;

    /// <summary>Largest constant input (elements): constants are small things such as a sample rate, not weights.</summary>
    public const long MaxConstantElements = 1 << 20;

    private static void ValidateValues(string type, List<double> values, string at, string typeAt, List<string> errors)
    {
        if (!ElementTypes.IsKnown(type))
        {
            errors.Add($"{typeAt}: '{type}' is not one of {string.Join(", ", ElementTypes.All)}");
            return;
        }

        for (var k = 0; k < values.Count; k++)
        {
            if (ElementTypes.Check(type, values[k]) is { } why)
            {
                errors.Add($"{at}[{k}]: {why}");
                return; // one bad value says enough; a long list would bury the other errors
            }
        }
    }

    private static void ValidateOutput(OutputSpec output, string at, List<string> errors)
    {
        if (string.IsNullOrWhiteSpace(output.Name)) errors.Add($"{at}.name: must not be empty");
        if (output.Type != "float32") errors.Add($"{at}.type: '{output.Type}' is not supported (expected float32)");
        ValidateShape(output.Shape, $"{at}.shape", errors, allowDynamic: true);
        switch (output.Kind)
        {
            case OutputKinds.Classification:
                if (output.Labels is null || output.Labels.Count == 0)
                {
                    errors.Add($"{at}.labels: a classification output needs its class labels");
                }
                else if (output.Shape.Count > 0 && output.Shape[^1] > 0 && output.Shape[^1] != output.Labels.Count)
                {
                    errors.Add($"{at}.labels: has {output.Labels.Count} labels but the output's last dimension is {output.Shape[^1]}");
                }

                break;
            case OutputKinds.Anomaly:
                if (output.Threshold is null) errors.Add($"{at}.threshold: an anomaly output needs a threshold");
                break;
            case OutputKinds.Regression:
                break;
            default:
                errors.Add($"{at}.kind: '{output.Kind}' is not one of classification, regression, anomaly");
                break;
        }
    }

    private static void ValidateShape(List<long> shape, string at, List<string> errors, bool allowDynamic)
    {
        if (shape.Count == 0)
        {
            errors.Add($"{at}: must have at least one dimension");
            return;
        }

        for (var d = 0; d < shape.Count; d++)
        {
            if (shape[d] == 0 || shape[d] < -1 || (!allowDynamic && shape[d] < 0))
            {
                errors.Add($"{at}[{d}]: {shape[d]} is not a valid dimension ({(allowDynamic ? "> 0, or -1 for dynamic" : "> 0")})");
            }
        }
    }

    /// <summary>Elements of a shape (free dimensions count as 1); saturates at <see cref="long.MaxValue"/> instead of overflowing.</summary>
    public static long Elements(IReadOnlyList<long> shape)
    {
        long n = 1;
        foreach (var d in shape)
        {
            var k = Math.Max(d, 1);
            if (n > long.MaxValue / k) return long.MaxValue;
            n *= k;
        }

        return n;
    }

    /// <summary>Semantic Versioning 2.0.0 (semver.org): MAJOR.MINOR.PATCH, then optional -PRERELEASE and +BUILD identifiers.</summary>
    private static bool IsSemVer(string v)
    {
        if (v.Length > 128 || !v.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '+')) return false;
        var core = v.Split('-', '+')[0].Split('.');
        return core.Length == 3 && core.All(p => p.Length > 0 && p.All(char.IsAsciiDigit));
    }

    private static string Printable(string s) => new(s.Take(40).Select(c => char.IsControl(c) ? '?' : c).ToArray());
}
