using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;

namespace EdgeMl.Protocol.Tests;

public class ManifestValidatorTests
{
    private static ModelManifest Valid() =>
        TestPackages.Manifest("x", [1, 4, 2], ["a", "b"], 4, "y", [1, 3], OutputKinds.Classification, ["p", "q", "r"]);

    [Fact]
    public void A_consistent_manifest_has_no_errors() => Assert.Empty(ManifestValidator.Validate(Valid()));

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

        Assert.Contains("version: '1.0' is not a semantic version (MAJOR.MINOR.PATCH)", errors);
        Assert.Contains("inputs[0].shape: [1, 5, 2] holds 10 values per batch item but 2 channels x window 4 = 8", errors);
        Assert.Contains("inputs[0].normalization.std[1]: must be > 0 (is 0)", errors);
        Assert.Contains("outputs[0].labels: has 2 labels but the output's last dimension is 3", errors);
        Assert.Contains("state[0].initial: has 3 values; expected 0 (zeros), 1 (fill) or 2 (one per element)", errors);
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
