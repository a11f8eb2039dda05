using System.Diagnostics;
using EdgeMl.Agent.Inference;

namespace EdgeMl.Agent.Pipeline;

/// <summary>
/// The agent's inference path for one window: normalize into the bound input buffers, run, decode.
/// Allocates nothing.
/// </summary>
public sealed class Predictor(ModelRunner runner)
{
    private readonly TensorWriter[] _writers = runner.Manifest.Inputs.Select(i => new TensorWriter(i)).ToArray();

    public ModelRunner Runner => runner;

    /// <param name="windows">for each model input, its window as [T, C] in time order</param>
    public void Predict(ReadOnlySpan<float[]> windows, Prediction into)
    {
        var start = Stopwatch.GetTimestamp();
        for (var i = 0; i < _writers.Length; i++)
        {
            _writers[i].Write(windows[i], runner.Input(i));
        }

        runner.Run();
        into.Decode(runner);
        into.LatencyMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }
}
