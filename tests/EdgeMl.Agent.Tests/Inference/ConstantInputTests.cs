using EdgeMl.Agent.Inference;
using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;
using DataType = Onnx.TensorProto.Types.DataType;

namespace EdgeMl.Agent.Tests.Inference;

public class ConstantInputTests
{
    /// <summary>
    /// y = mean(x) · float(gain) + float(steps_in); steps_out = steps_in + 1 (int64 state, a call counter); gain an int64
    /// scalar constant; flag a bool constant that must be fed too (added as 0 · float(flag)).
    /// </summary>
    private static string CounterPackage(TempDirectory dir, long gain, long firstStep)
    {
        var model = new OnnxModelBuilder()
            .Input("x", 1, 2, 1).Input("gain", DataType.Int64).Input("steps_in", DataType.Int64, 1).Input("flag", DataType.Bool, 2)
            .Output("y", 1).Output("steps_out", DataType.Int64, 1)
            .Constant("one", [1], 1f).Constant("zero", [1], 0f)
            .Node("ReduceMean", ["x"], ["m"], "axes", [1, 2], ("keepdims", 0))
            .Node("Cast", ["gain"], ["gain_f"], ("to", (long)DataType.Float))
            .Node("Cast", ["steps_in"], ["steps_f"], ("to", (long)DataType.Float))
            .Node("Cast", ["flag"], ["flag_f"], ("to", (long)DataType.Float))
            .Node("ReduceMax", ["flag_f"], ["flag_sum"], "axes", [0], ("keepdims", 1))
            .Node("Mul", ["flag_sum", "zero"], ["nothing"])
            .Node("Mul", ["m", "gain_f"], ["scaled"])
            .Node("Add", ["scaled", "steps_f"], ["y0"])
            .Node("Add", ["y0", "nothing"], ["y"])
            .Node("Add", ["steps_f", "one"], ["next_f"])
            .Node("Cast", ["next_f"], ["steps_out"], ("to", (long)DataType.Int64))
            .Build();
        var manifest = TestPackages.Manifest("x", [1, 2, 1], ["v"], 2, "y", [1]);
        manifest.Constants.Add(new ConstantSpec { Name = "gain", Type = "int64", Shape = [], Values = [gain] });
        manifest.Constants.Add(new ConstantSpec { Name = "flag", Type = "bool", Shape = [2], Values = [1, 0] });
        manifest.State.Add(new StateSpec { Input = "steps_in", Output = "steps_out", Type = "int64", Shape = [1], Initial = [firstStep] });
        return TestPackages.Write(dir.Path, manifest, model);
    }

    [Fact]
    public void Constant_inputs_of_any_type_are_fed_on_every_call_and_an_int64_state_is_carried_over()
    {
        using var dir = new TempDirectory();
        using var runner = ModelRunner.Load(ModelPackage.Open(CounterPackage(dir, gain: 3, firstStep: 5)), new InferenceSettings { WarmupRuns = 2 });
        var seen = new List<float>();
        for (var i = 0; i < 3; i++)
        {
            runner.Input(0)[0] = 1;
            runner.Input(0)[1] = 3;
            runner.Run();
            seen.Add(runner.Output(0)[0]);
        }

        Assert.Equal([11f, 12f, 13f], seen); // mean 2 · gain 3 + step 5, 6, 7
        Assert.Equal(8L, BitConverter.ToInt64(runner.StateBytes(0)));
        Assert.Throws<InvalidOperationException>(() => runner.State(0).Length);
        runner.ResetState();
        Assert.Equal(5L, BitConverter.ToInt64(runner.StateBytes(0)));
    }

    [Fact]
    public void A_constant_whose_type_differs_from_the_models_input_is_refused_naming_both()
    {
        using var dir = new TempDirectory();
        var path = CounterPackage(dir, 3, 0);
        var package = ModelPackage.Open(path);
        package.Manifest.Constants[0].Type = "int32";
        var e = Assert.Throws<ModelPackageException>(() => ModelRunner.Load(package, new InferenceSettings()));
        Assert.Contains("constants[0]: model input 'gain' is int64[], the manifest declares int32", e.Message, StringComparison.Ordinal);
    }
}
