using EdgeMl.Agent.Hosting;
using EdgeMl.Agent.Inference;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Agent.Sensors;
using EdgeMl.Agent.Sensors.Bme280;
using EdgeMl.Agent.Sensors.Mpu6050;
using EdgeMl.Agent.Tests.Pipeline;
using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.I2c;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeMl.Agent.Tests.Sensors;

/// <summary>
/// A chip that answers with another id than the one configured is a configuration error: one message naming bus,
/// address and the id found, the sensor <c>misconfigured</c> in health, and no retries (the real drivers, simulated registers).
/// </summary>
public class LookalikeChipTests
{
    [Theory]
    [InlineData(0x70, "MPU-6500")]
    [InlineData(0x98, "clone")]
    public void An_mpu6050_clone_with_another_who_am_i_is_a_configuration_error_naming_the_id(byte whoAmI, string what)
    {
        var chip = new SimulatedMpu6050(whoAmI: whoAmI);
        using var sensor = new Mpu6050Sensor(() => chip, "mpu6050@1:0x68", 100);
        var e = Assert.Throws<SensorMisconfiguredException>(() => sensor.Read(new float[3]));
        Assert.StartsWith($"mpu6050@1:0x68: the chip answers with id 0x{whoAmI:X2}", e.Message, StringComparison.Ordinal);
        Assert.Contains(what, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_bmp280_is_read_as_the_bmp280_sensor_kind_temperature_and_pressure()
    {
        var chip = new SimulatedBme280(chipId: 0x58) { TemperatureC = 24.5, PressurePa = 98_000 };
        using var sensor = (ISensorSource)SensorFactory.Create("bmp280,bus=1,address=0x76", 1, "Agent:Sensor", _ => chip);
        Assert.Equal(["temperature", "pressure"], sensor.Channels);
        var values = new float[2];
        Assert.True(sensor.Read(values));
        Assert.Equal(24.5, values[0], 0.05);
        Assert.Equal(980.0, values[1], 0.5);

        var bme = new SimulatedBme280();
        using var wrong = (ISensorSource)SensorFactory.Create("bmp280", 1, "Agent:Sensor", _ => bme);
        var e = Assert.Throws<SensorMisconfiguredException>(() => wrong.Read(values));
        Assert.Contains("bmp280@1:0x76: the chip answers with id 0x60 (a BME280: use sensor bme280", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_bus_that_nothing_drives_is_an_io_error_that_is_retried_not_a_misconfiguration()
    {
        var chip = new SimulatedMpu6050(whoAmI: 0xFF);
        using var sensor = new Mpu6050Sensor(() => chip, "mpu6050@1:0x68", 100);
        Assert.Throws<IOException>(() => sensor.Read(new float[3]));
    }

    [Fact]
    public async Task A_bmp280_where_a_bme280_was_configured_stops_the_agent_once_with_the_sensor_misconfigured_in_health()
    {
        using var dir = new TempDirectory();
        var model = new OnnxModelBuilder().Input("env", 1, 4, 3).Output("flat", 1, 12).Node("Flatten", ["env"], ["flat"], ("axis", 1)).Build();
        var path = TestPackages.Write(dir.Path, TestPackages.Manifest("env", [1, 4, 3], ["temperature", "humidity", "pressure"], 4, "flat", [1, 12]), model);
        using var runner = ModelRunner.Load(ModelPackage.Open(path), new InferenceSettings());
        var chip = new SimulatedBme280(chipId: 0x58);
        using var sensor = new Bme280Sensor(() => chip, "bme280@1:0x76", sampleRateHz: 400);
        var health = new AgentHealth(TimeProvider.System);
        var pipeline = new AgentPipeline(sensor, new Predictor(runner), new PipelineSettings { RetryInitialMs = 1, RetryMaxMs = 2 }, health, [new CollectingSink()],
            TimeProvider.System, NullLogger.Instance);
        var changes = new List<SensorStateChange>();
        pipeline.SensorStateChanged += changes.Add;

        var e = await Assert.ThrowsAsync<AgentStoppedException>(() => pipeline.RunAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)));

        Assert.Equal("sensor", e.Stage);
        Assert.Contains("bme280@1:0x76: the chip answers with id 0x58 (a BMP280", e.Message, StringComparison.Ordinal);
        Assert.Contains("use sensor bmp280", e.Message, StringComparison.Ordinal);
        var s = health.Snapshot().Sensors[0];
        Assert.Equal("misconfigured", s.State);
        Assert.Equal(1, s.Errors); // asked once, not retried
        Assert.Equal("misconfigured", Assert.Single(changes).State); // one alert
    }
}
