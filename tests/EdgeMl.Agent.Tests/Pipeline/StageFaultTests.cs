using EdgeMl.Agent.Hosting;
using EdgeMl.Agent.Inference;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Agent.Sensors;
using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeMl.Agent.Tests.Pipeline;

/// <summary>
/// Fail loud or keep working, never hang: a fault in each pipeline stage either is handled (counted in health, the
/// agent goes on) or stops all stages, and <see cref="AgentPipeline.RunAsync"/> throws one line naming the stage.
/// The pipelines here are paced in real time: the sampler never blocks, so a hang would be a pipeline running on.
/// </summary>
public sealed class StageFaultTests : IDisposable
{
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(10);
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>env [1, 4, 3] → Flatten → [1, 12]; with <paramref name="failing"/>, one that fails on every window with data.</summary>
    private ModelRunner Model(bool failing = false)
    {
        var builder = new OnnxModelBuilder().Input("env", 1, 4, 3);
        if (failing)
        {
            // Reshape to [1, 12 + sum(env)]: fine on the loader's all-zero smoke run, fails on every real window.
            builder.Output("flat", 1, 12).Constant("base", [2], 1, 12).Constant("pick", [2], 0, 1)
                .Node("ReduceSum", ["env"], ["sum"], ("keepdims", 0))
                .Node("Mul", ["pick", "sum"], ["extra"])
                .Node("Add", ["base", "extra"], ["shape_f"])
                .Node("Cast", ["shape_f"], ["shape"], ("to", 7))
                .Node("Reshape", ["env", "shape"], ["flat"]);
        }
        else
        {
            builder.Output("flat", 1, 12).Node("Flatten", ["env"], ["flat"], ("axis", 1));
        }

        var path = TestPackages.Write(_dir.Path, TestPackages.Manifest("env", [1, 4, 3], ["a", "b", "c"], 4, "flat", [1, 12]), builder.Build(), failing ? "failing.edgepkg" : "flat.edgepkg");
        return ModelRunner.Load(ModelPackage.Open(path), new InferenceSettings());
    }

    private static AgentPipeline Pipeline(ModelRunner runner, ISensorSource source, AgentHealth health, params IPredictionSink[] sinks) =>
        new(source, new Predictor(runner), new PipelineSettings { Realtime = true }, health, sinks, TimeProvider.System, NullLogger.Instance);

    [Fact]
    public async Task A_sensor_that_throws_something_other_than_an_IO_error_stops_the_pipeline_with_the_stage_named()
    {
        using var runner = Model();
        using var source = new ScriptedSource(n => n == 40 ? throw new InvalidOperationException("driver bug") : n);
        var run = Pipeline(runner, source, new AgentHealth(TimeProvider.System), new CollectingSink()).RunAsync(CancellationToken.None);

        var e = await Assert.ThrowsAsync<AgentStoppedException>(() => run.WaitAsync(Soon));
        Assert.Equal("sensor", e.Stage);
        Assert.Equal("sensor failed: driver bug", e.Message);
    }

    [Fact]
    public async Task A_model_that_fails_on_twenty_windows_in_a_row_stops_the_pipeline_instead_of_leaving_the_sampler_running()
    {
        using var runner = Model(failing: true);
        using var source = new ScriptedSource(n => n);
        var health = new AgentHealth(TimeProvider.System);
        var run = Pipeline(runner, source, health, new CollectingSink()).RunAsync(CancellationToken.None);

        var e = await Assert.ThrowsAsync<AgentStoppedException>(() => run.WaitAsync(Soon));
        Assert.Equal("inference", e.Stage);
        Assert.Contains("failed on 20 windows in a row", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal(20, health.InferenceErrors);
    }

    [Fact]
    public async Task A_sink_that_fails_now_and_then_is_counted_in_health_and_the_other_sinks_get_every_prediction()
    {
        using var runner = Model();
        using var source = new ScriptedSource(n => n);
        var health = new AgentHealth(TimeProvider.System);
        var relay = new FaultySink(n => n % 3 == 0); // a relay whose I2C expander fails every third switch
        var log = new CollectingSink();
        using var cts = new CancellationTokenSource();
        var run = Pipeline(runner, source, health, relay, log).RunAsync(cts.Token);

        await Eventually.True(() => log.Count >= 30, "30 predictions");
        Assert.False(run.IsCompleted);
        var sink = Assert.Single(health.Snapshot().Sinks);
        Assert.Equal("relay", sink.Name);
        Assert.True(sink.Errors >= 9, $"{sink.Errors} errors counted");
        Assert.Equal("GPIO 17: Remote I/O error", sink.LastError);
        Assert.Equal(log.Snapshot().Select(p => p.Seq), Enumerable.Range(1, log.Count).Select(i => (long)i));

        await cts.CancelAsync();
        await run.WaitAsync(Soon);
    }

    [Fact]
    public async Task A_sink_that_fails_on_twenty_predictions_in_a_row_stops_the_pipeline_instead_of_leaving_inference_waiting()
    {
        using var runner = Model();
        using var source = new ScriptedSource(n => n);
        var health = new AgentHealth(TimeProvider.System);
        var run = Pipeline(runner, source, health, new FaultySink(_ => true), new CollectingSink()).RunAsync(CancellationToken.None);

        var e = await Assert.ThrowsAsync<AgentStoppedException>(() => run.WaitAsync(Soon));
        Assert.Equal("sinks", e.Stage);
        Assert.Equal("sinks failed: the relay sink failed on 20 predictions in a row: GPIO 17: Remote I/O error", e.Message);
        Assert.Equal(20, health.Snapshot().Sinks[0].Errors);
    }

    /// <summary>A paced 400 Hz source whose nth read (from 1) is <paramref name="value"/>(n) on every channel.</summary>
    private sealed class ScriptedSource(Func<long, float> value) : ISensorSource
    {
        private long _n;
        public string Name => "scripted";
        public IReadOnlyList<string> Channels { get; } = ["a", "b", "c"];
        public double SampleRateHz => 400;
        public bool IsVirtual => false;

        public bool Read(Span<float> values)
        {
            values.Fill(value(++_n));
            return true;
        }

        public void Dispose()
        {
        }
    }

    /// <summary>A sink that fails (an I/O error, as a GPIO expander gives) on the predictions <paramref name="fails"/> picks.</summary>
    private sealed class FaultySink(Func<long, bool> fails) : IPredictionSink
    {
        public string Name => "relay";

        public void OnPrediction(Prediction prediction)
        {
            if (fails(prediction.Sequence)) throw new IOException("GPIO 17: Remote I/O error");
        }
    }
}
