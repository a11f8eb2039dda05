using EdgeMl.Agent.Inference;
using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Inference;

public class ManifestMismatchTests
{
    // y = Flatten(x): x [1, 4, 2] → y [1, 8]
    private static byte[] FlattenModel() => new OnnxModelBuilder()
        .Input("x", 1, 4, 2).Output("y", 1, 8)
        .Node("Flatten", ["x"], ["y"], ("axis", 1))
        .Build();

    private static ModelPackageException LoadFails(ModelManifest manifest)
    {
        using var dir = new TempDirectory();
        var path = TestPackages.Write(dir.Path, manifest, FlattenModel());
        return Assert.Throws<ModelPackageException>(() => ModelRunner.Load(ModelPackage.Open(path), new InferenceSettings()));
    }

    [Fact]
    public void A_matching_manifest_loads_and_runs()
    {
        using var dir = new TempDirectory();
        var path = TestPackages.Write(dir.Path, TestPackages.Manifest("x", [1, 4, 2], ["a", "b"], 4, "y", [1, 8]), FlattenModel());
        using var runner = ModelRunner.Load(ModelPackage.Open(path), new InferenceSettings());
        for (var i = 0; i < 8; i++) runner.Input(0)[i] = i * 1.5f;
        runner.Run();
        Assert.Equal([0f, 1.5f, 3f, 4.5f, 6f, 7.5f, 9f, 10.5f], runner.Output(0).ToArray());
    }

    [Fact]
    public void Wrong_input_name_is_refused_naming_both_names()
    {
        var e = LoadFails(TestPackages.Manifest("accel", [1, 4, 2], ["a", "b"], 4, "y", [1, 8]));
        Assert.Contains("manifest does not match the model", e.Message, StringComparison.Ordinal);
        Assert.Contains("inputs[0]: the model has no input named 'accel'", e.Message, StringComparison.Ordinal);
        Assert.Contains("model input 'x' float32[1, 4, 2] is not declared", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Wrong_input_shape_is_refused_naming_both_shapes()
    {
        var e = LoadFails(TestPackages.Manifest("x", [1, 2, 4], ["a", "b", "c", "d"], 2, "y", [1, 8]));
        Assert.Contains("inputs[0]: model input 'x' has shape float32[1, 4, 2], the manifest declares [1, 2, 4]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_output_is_refused_listing_the_models_outputs()
    {
        var e = LoadFails(TestPackages.Manifest("x", [1, 4, 2], ["a", "b"], 4, "scores", [1, 8]));
        Assert.Contains("outputs[0]: the model has no output named 'scores' (its outputs: 'y')", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Wrong_output_rank_is_refused()
    {
        var e = LoadFails(TestPackages.Manifest("x", [1, 4, 2], ["a", "b"], 4, "y", [8]));
        Assert.Contains("(rank 2), the manifest declares [8] (rank 1)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Package_is_named_in_the_error()
    {
        var e = LoadFails(TestPackages.Manifest("accel", [1, 4, 2], ["a", "b"], 4, "y", [1, 8]));
        Assert.Contains("model.edgepkg", e.Message, StringComparison.Ordinal);
    }
}
