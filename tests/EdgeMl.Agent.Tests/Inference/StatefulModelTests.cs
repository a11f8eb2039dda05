using EdgeMl.Agent.Inference;
using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Inference;

public class StatefulModelTests
{
    /// <summary>
    /// A tiny recurrent cell: h_out = 0.5 · h_in + mean(x), y = h_out. x is a window of 2 samples of one channel.
    /// </summary>
    private static string RecurrentPackage(TempDirectory dir, float initial)
    {
        var model = new OnnxModelBuilder()
            .Input("x", 1, 2, 1).Input("h_in", 1, 1)
            .Output("y", 1, 1).Output("h_out", 1, 1)
            .Constant("half", [1], 0.5f)
            .Node("ReduceMean", ["x"], ["m"], "axes", [1], ("keepdims", 0))
            .Node("Mul", ["h_in", "half"], ["decayed"])
            .Node("Add", ["decayed", "m"], ["h_out"])
            .Node("Identity", ["h_out"], ["y"])
            .Build();
        var manifest = TestPackages.Manifest("x", [1, 2, 1], ["v"], 2, "y", [1, 1]);
        manifest.State.Add(new StateSpec { Input = "h_in", Output = "h_out", Shape = [1, 1], Initial = [initial] });
        return TestPackages.Write(dir.Path, manifest, model);
    }

    [Fact]
    public void State_output_is_fed_back_as_state_input_on_the_next_call()
    {
        using var dir = new TempDirectory();
        using var runner = ModelRunner.Load(ModelPackage.Open(RecurrentPackage(dir, initial: 10)), new InferenceSettings { WarmupRuns = 3 });

        Assert.Equal(10f, runner.State(0)[0]); // warm-up runs do not leak into the state
        var seen = new List<float>();
        foreach (var (a, b) in new[] { (1f, 3f), (2f, 2f), (0f, 4f) })
        {
            runner.Input(0)[0] = a;
            runner.Input(0)[1] = b;
            runner.Run();
            seen.Add(runner.Output(0)[0]);
        }

        // h: 10 → 0.5·10 + 2 = 7 → 0.5·7 + 2 = 5.5 → 0.5·5.5 + 2 = 4.75
        Assert.Equal([7f, 5.5f, 4.75f], seen);
        Assert.Equal(4.75f, runner.State(0)[0]);
    }

    [Fact]
    public void Reset_puts_the_initial_state_from_the_manifest_back()
    {
        using var dir = new TempDirectory();
        using var runner = ModelRunner.Load(ModelPackage.Open(RecurrentPackage(dir, initial: -2)), new InferenceSettings());
        runner.Input(0).Fill(1);
        runner.Run();
        Assert.Equal(0f, runner.State(0)[0]); // 0.5·(-2) + 1
        runner.ResetState();
        Assert.Equal(-2f, runner.State(0)[0]);
    }

    [Fact]
    public void A_state_tensor_missing_from_the_manifest_is_refused()
    {
        using var dir = new TempDirectory();
        var model = new OnnxModelBuilder()
            .Input("x", 1, 2, 1).Input("h_in", 1, 1).Output("y", 1, 1)
            .Node("ReduceMean", ["x"], ["m"], "axes", [1], ("keepdims", 0))
            .Node("Add", ["h_in", "m"], ["y"])
            .Build();
        var path = TestPackages.Write(dir.Path, TestPackages.Manifest("x", [1, 2, 1], ["v"], 2, "y", [1, 1]), model);
        var e = Assert.Throws<ModelPackageException>(() => ModelRunner.Load(ModelPackage.Open(path), new InferenceSettings()));
        Assert.Contains("model input 'h_in' float32[1, 1] is not declared in the manifest (neither in inputs, state nor constants)", e.Message, StringComparison.Ordinal);
    }
}
