using System.Device.Gpio;
using EdgeMl.Agent.Actions;
using EdgeMl.Agent.Configuration;
using EdgeMl.Agent.Gpio;
using EdgeMl.Agent.Hosting;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Agent.Sensors.Simulated;
using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace EdgeMl.Agent.Tests.Actions;

public class GpioActionTests
{
    private static readonly ModelManifest AnomalyManifest =
        TestPackages.Manifest("x", [1, 1, 1], ["v"], 1, "score", [1, 1], OutputKinds.Anomaly);

    private static Prediction Scored(float score)
    {
        var p = new Prediction(AnomalyManifest) { Score = score };
        return p;
    }

    [Fact]
    public void Threshold_drives_the_pin_and_holds_it_before_release()
    {
        var driver = new SimulatedGpioDriver();
        using var gpio = new GpioController(driver);
        var time = new FakeTimeProvider();
        using var actions = new GpioActions(gpio, [new ActionRule { Pin = 5, Above = 0.7f, HoldMs = 1000 }], time, NullLogger.Instance);

        Assert.Equal(PinMode.Output, driver.ModeOf(5));
        actions.OnPrediction(Scored(0.2f));
        Assert.Equal(PinValue.Low, driver.Get(5));

        actions.OnPrediction(Scored(0.9f));
        Assert.Equal(PinValue.High, driver.Get(5));

        time.Advance(TimeSpan.FromMilliseconds(500));
        actions.OnPrediction(Scored(0.1f));
        Assert.Equal(PinValue.High, driver.Get(5)); // still within the hold time

        time.Advance(TimeSpan.FromMilliseconds(600));
        actions.OnPrediction(Scored(0.1f));
        Assert.Equal(PinValue.Low, driver.Get(5));
    }

    [Fact]
    public void Active_low_relays_are_driven_low_when_on_and_released_high_at_dispose()
    {
        var driver = new SimulatedGpioDriver();
        using var gpio = new GpioController(driver);
        var actions = new GpioActions(gpio, [new ActionRule { Pin = 6, Above = 0.5f, ActiveLow = true, After = 2 }], TimeProvider.System, NullLogger.Instance);
        Assert.Equal(PinValue.High, driver.Get(6));
        actions.OnPrediction(Scored(0.8f));
        Assert.Equal(PinValue.High, driver.Get(6)); // After = 2: one match is not enough
        actions.OnPrediction(Scored(0.8f));
        Assert.Equal(PinValue.Low, driver.Get(6));
        actions.Dispose();
        Assert.Equal(PinValue.High, driver.Get(6));
    }

    [Fact]
    public async Task Bundled_model_switches_a_relay_when_the_simulated_machine_develops_a_bearing_fault()
    {
        var driver = new SimulatedGpioDriver();
        using var gpio = new GpioController(driver);
        using var results = new MemoryStream();
        var writes = new List<(PinValue Value, int LinesBefore)>();
        driver.PinWritten += (pin, value) => writes.Add((value, CountLines(results)));

        var options = new AgentOptions
        {
            Model = TestPackages.VibrationInt8,
            Sensor = "sim:vibration,fault=bearing,fault-at=3",
            Seed = 11,
            Pipeline = new PipelineSettings { Realtime = false, Count = 40 },
            Actions = [new ActionRule { Pin = 17, Label = "bearing_fault", MinScore = 0.9f, After = 2 }],
        };
        AgentOptionsLoader.Validate(options);
        using (var runtime = new AgentRuntime(options, NullLoggerFactory.Instance, gpio: gpio, resultStream: results))
        {
            await runtime.RunAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        }

        var lines = System.Text.Encoding.UTF8.GetString(results.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(40, lines.Count);
        var on = Assert.Single(writes, w => w.Value == PinValue.High);
        // Actions run before the result log: the prediction that switched the pin is line LinesBefore.
        var trigger = on.LinesBefore;
        Assert.Equal("bearing_fault", lines[trigger].GetProperty("label").GetString());
        Assert.Equal("bearing_fault", lines[trigger - 1].GetProperty("label").GetString());
        Assert.True(lines[trigger - 1].GetProperty("t").GetDouble() >= 3.0);
        Assert.All(lines.Where(l => l.GetProperty("t").GetDouble() < 3.0), l => Assert.Equal("normal", l.GetProperty("label").GetString()));
        Assert.Equal(PinValue.Low, driver.Get(17)); // released when the agent stopped
    }

    private static int CountLines(MemoryStream s) => s.ToArray().Count(b => b == (byte)'\n');
}
