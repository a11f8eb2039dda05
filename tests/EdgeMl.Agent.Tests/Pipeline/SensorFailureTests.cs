using EdgeMl.Agent.Inference;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Agent.Sensors.Bme280;
using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.I2c;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeMl.Agent.Tests.Pipeline;

public class SensorFailureTests
{
    [Fact]
    public async Task A_sensor_that_fails_mid_run_is_retried_with_backoff_reported_in_health_and_the_agent_keeps_running()
    {
        using var dir = new TempDirectory();
        // env [1, 4, 3] (4 samples of temperature, humidity, pressure) → Flatten → [1, 12]
        var model = new OnnxModelBuilder().Input("env", 1, 4, 3).Output("flat", 1, 12).Node("Flatten", ["env"], ["flat"], ("axis", 1)).Build();
        var path = TestPackages.Write(dir.Path, TestPackages.Manifest("env", [1, 4, 3], ["temperature", "humidity", "pressure"], 4, "flat", [1, 12]), model);
        using var runner = ModelRunner.Load(ModelPackage.Open(path), new InferenceSettings());

        var chip = new SimulatedBme280 { TemperatureC = 20 };
        using var sensor = new Bme280Sensor(() => chip, "bme280@1:0x76", sampleRateHz: 400);
        var health = new AgentHealth(TimeProvider.System);
        var sink = new CollectingSink();
        var settings = new PipelineSettings { RetryInitialMs = 2, RetryMaxMs = 40 };
        var pipeline = new AgentPipeline(sensor, new Predictor(runner), settings, health, [sink], TimeProvider.System, NullLogger.Instance);
        using var cts = new CancellationTokenSource();
        var running = pipeline.RunAsync(cts.Token);

        await sink.WaitFor(v => Math.Abs(v[0] - 20) < 0.05, TimeSpan.FromSeconds(10));

        chip.Failing = true;
        await Eventually.True(() => health.Snapshot().Sensors[0].ConsecutiveErrors >= 5, "five failed reads in a row");
        var failing = health.Snapshot().Sensors[0];
        Assert.Equal("failing", failing.State);
        Assert.Contains("Remote I/O error", failing.LastError, StringComparison.Ordinal);
        Assert.Contains("bme280@1:0x76", failing.LastError, StringComparison.Ordinal);
        Assert.NotNull(failing.RetryInSeconds);
        Assert.True(failing.RetryInSeconds >= 0.016, $"backoff doubles: after {failing.ConsecutiveErrors} failures the wait is {failing.RetryInSeconds}s");
        Assert.False(running.IsCompleted, "the pipeline must keep running while its sensor fails");

        chip.TemperatureC = 31.5;
        chip.Failing = false;
        // Every value in the window comes from the recovered chip: the agent reads it again.
        await sink.WaitFor(v => v.Where((_, i) => i % 3 == 0).All(t => Math.Abs(t - 31.5) < 0.05), TimeSpan.FromSeconds(10));

        var recovered = health.Snapshot().Sensors[0];
        Assert.Equal("ok", recovered.State);
        Assert.Equal(0, recovered.ConsecutiveErrors);
        Assert.True(recovered.Errors >= 5);
        Assert.Null(recovered.RetryInSeconds);

        await cts.CancelAsync();
        await running.WaitAsync(TimeSpan.FromSeconds(10));
    }
}
