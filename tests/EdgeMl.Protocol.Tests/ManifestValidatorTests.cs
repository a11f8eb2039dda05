using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;

namespace EdgeMl.Protocol.Tests;

public class ManifestValidatorTests
{
    private static ModelManifest Valid() =>
        TestPackages.Manifest("x", [1, 4, 2], ["a", "b"], 4, "y", [1, 3], OutputKinds.Classification, ["p", "q", "r"]);

    [Fact]
    public void A_consistent_manifest_has_no_errors() => Assert.Empty(ManifestValidator.Validate(Valid()));

    [Theory]
    [InlineData("vib\nINFO forged line", "1.0.0", "name: must be at most 128 characters, without control characters or '@'")]
    [InlineData("vib@2", "1.0.0", "name: must be at most 128 characters, without control characters or '@'")]
    [InlineData("vib", "1.0.0-a\"b\\c", "version: '1.0.0-a\"b\\c' is not a semantic version (MAJOR.MINOR.PATCH, then -PRERELEASE and +BUILD of A-Z a-z 0-9 . -)")]
    public void A_name_or_version_that_would_break_a_log_line_or_a_reference_is_refused(string name, string version, string error)
    {
        var m = Valid();
        m.Name = name;
        m.Version = version;
        Assert.Contains(error, ManifestValidator.Validate(m));
        m.Name = "vib";
        m.Version = "1.2.3-rc.1+build.5";
        Assert.Empty(ManifestValidator.Validate(m));
    }

    [Fact]
    public void Every_problem_is_reported_with_its_json_path()
    {
        var m = Valid();
        m.Version = "1.0";
        m.Inputs[0].Shape = [1, 5, 2];
        m.Inputs[0].Normalization = new Normalization { Mean = [0, 0], Std = [1, 0] };
        m.Outputs[0].Labels = ["p", "q"];
        m.State.Add(new StateSpec { Input = "h", Output = "h2", Shape = [1, 2], Initial = [1, 2, 3] });

        var errors = ManifestValidator.Validate(m);

        Assert.Contains("version: '1.0' is not a semantic version (MAJOR.MINOR.PATCH, then -PRERELEASE and +BUILD of A-Z a-z 0-9 . -)", errors);
        Assert.Contains("inputs[0].shape: [1, 5, 2] holds 10 values per batch item but 2 channels x window 4 = 8", errors);
        Assert.Contains("inputs[0].normalization.std[1]: must be > 0 (is 0)", errors);
        Assert.Contains("outputs[0].labels: has 2 labels but the output's last dimension is 3", errors);
        Assert.Contains("state[0].initial: has 3 values; expected 0 (zeros), 1 (fill) or 2 (one per element)", errors);
    }

    [Fact]
    public void Constants_and_state_of_any_element_type_are_checked_against_their_type()
    {
        var m = Valid();
        m.Constants.Add(new ConstantSpec { Name = "sr", Type = "int64", Shape = [], Values = [16000] });
        m.State.Add(new StateSpec { Input = "steps", Output = "steps_out", Type = "int32", Shape = [1] });
        Assert.Empty(ManifestValidator.Validate(m));

        m.Constants.Add(new ConstantSpec { Name = "rate", Type = "int64", Shape = [], Values = [2.5] });
        m.Constants.Add(new ConstantSpec { Name = "flag", Type = "bool", Shape = [2], Values = [1, 2] });
        m.Constants.Add(new ConstantSpec { Name = "big", Type = "int64", Shape = [1], Values = [1e17] });
        m.Constants.Add(new ConstantSpec { Name = "odd", Type = "complex64", Shape = [3], Values = [1, 2] });
        m.Constants.Add(new ConstantSpec { Name = "x", Type = "float32", Shape = [0], Values = [1] });
        m.State.Add(new StateSpec { Input = "h", Output = "h_out", Type = "uint8", Shape = [2], Initial = [300] });
        m.State.Add(new StateSpec { Input = "kv", Output = "kv_out", Shape = [100_000, 100_000] });

        var errors = ManifestValidator.Validate(m);

        Assert.Contains("constants[1].values[0]: 2.5 is not an integer (int64 (as a JSON number: ±(2^53 − 1)) expected)", errors);
        Assert.Contains("constants[2].values[1]: 2 is not a bool (0 or 1)", errors);
        Assert.Contains("constants[3].values[0]: 1E+17 is outside the range of int64 (as a JSON number: ±(2^53 − 1))", errors);
        Assert.Contains("constants[4].values: has 2 values; expected 1 (every element) or 3 (one per element)", errors);
        Assert.Contains("constants[4].type: 'complex64' is not one of float32, float64, float16, int64, int32, int16, int8, uint8, bool", errors);
        Assert.Contains("constants[5].shape[0]: 0 is not a valid dimension (> 0; [] for a scalar)", errors);
        Assert.Contains("inputs: 'x' is declared more than once", errors);
        Assert.Contains("state[1].initial[0]: 300 is outside the range of uint8", errors);
        Assert.Contains("state[2].shape: 10000000000 elements; a state tensor holds at most 67108864", errors);
    }

    [Fact]
    public void A_manifest_with_constants_and_typed_state_survives_a_json_round_trip()
    {
        var m = Valid();
        m.Constants.Add(new ConstantSpec { Name = "sr", Type = "int64", Shape = [], Values = [16000] });
        m.State.Add(new StateSpec { Input = "state", Output = "stateN", Type = "float16", Shape = [2, 1, 4], Initial = [0.5] });
        var back = ModelPackage.ParseManifest(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(m, EdgeMl.Protocol.Json.ProtocolJsonContext.Default.ModelManifest), "m.json");
        var c = Assert.Single(back.Constants);
        Assert.Equal(("sr", "int64", 0, 16000.0), (c.Name, c.Type, c.Shape.Count, c.Values[0]));
        Assert.Equal(("float16", 0.5), (back.State[0].Type, back.State[0].Initial[0]));
    }

    [Theory]
    [InlineData("9007199254740993")] // 2^53 + 1: reads back as 2^53
    [InlineData("9007199254740992")]
    [InlineData("-9007199254740993")]
    [InlineData("9223372036854775807")]
    public void An_int64_constant_a_json_number_cannot_carry_exactly_is_refused_not_rounded(string literal)
    {
        var m = Valid();
        m.Constants.Add(new ConstantSpec { Name = "sr", Type = "int64", Shape = [], Values = [271828] });
        var json = System.Text.Encoding.UTF8.GetString(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(m, EdgeMl.Protocol.Json.ProtocolJsonContext.Default.ModelManifest));
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(json, "271828"));
        json = json.Replace("271828", literal, StringComparison.Ordinal);

        var e = Assert.ThrowsAny<Exception>(() => ModelPackage.ParseManifest(System.Text.Encoding.UTF8.GetBytes(json), "m.json"));
        Assert.Contains("constants[0].values[0]", e.Message, StringComparison.Ordinal);
        Assert.Contains("outside the range of int64", e.Message, StringComparison.Ordinal);

        json = json.Replace(literal, "9007199254740991", StringComparison.Ordinal);
        Assert.Equal(9007199254740991d, Assert.Single(ModelPackage.ParseManifest(System.Text.Encoding.UTF8.GetBytes(json), "m.json").Constants).Values[0]);
    }

    [Fact]
    public void An_anomaly_output_needs_a_threshold_and_kinds_are_checked()
    {
        var m = Valid();
        m.Outputs[0].Kind = OutputKinds.Anomaly;
        m.Outputs[0].Threshold = null;
        Assert.Contains("outputs[0].threshold: an anomaly output needs a threshold", ManifestValidator.Validate(m));
        m.Outputs[0].Kind = "ranking";
        Assert.Contains("outputs[0].kind: 'ranking' is not one of classification, regression, anomaly", ManifestValidator.Validate(m));
    }
}
