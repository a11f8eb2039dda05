using EdgeMl.Agent.Configuration;
using Microsoft.Extensions.Configuration;

namespace EdgeMl.Agent.Tests.Configuration;

public class ConfigValidationTests
{
    private static readonly Dictionary<string, string?> Valid = new()
    {
        ["Agent:Model"] = "model.edgepkg",
        ["Agent:Sensor"] = "sim:vibration",
    };

    private static ConfigurationException Rejected(params (string Key, string? Value)[] settings)
    {
        var all = new Dictionary<string, string?>(Valid);
        foreach (var (k, v) in settings) all[k] = v;
        var config = new ConfigurationBuilder().AddInMemoryCollection(all).Build();
        return Assert.Throws<ConfigurationException>(() => AgentOptionsLoader.Load(config));
    }

    [Fact]
    public void Valid_config_binds_nested_settings_and_lists()
    {
        var all = new Dictionary<string, string?>(Valid)
        {
            ["Agent:Inference:Threads"] = "2",
            ["Agent:Pipeline:Realtime"] = "false",
            ["Agent:Actions:0:Pin"] = "17",
            ["Agent:Actions:0:Label"] = "bearing_fault",
        };
        var o = AgentOptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(all).Build());
        Assert.Equal(2, o.Inference.Threads);
        Assert.False(o.Pipeline.Realtime);
        Assert.Equal(17, Assert.Single(o.Actions).Pin);
    }

    [Fact]
    public void Missing_model_names_the_key() =>
        Assert.Equal("Agent:Model", Rejected(("Agent:Model", null)).Key);

    [Fact]
    public void Unknown_provider_names_the_key_and_the_choices()
    {
        var e = Rejected(("Agent:Inference:Provider", "gpu"));
        Assert.Equal("Agent:Inference:Provider", e.Key);
        Assert.Contains("'gpu' is not one of cpu, cuda, tensorrt", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_value_of_the_wrong_type_names_the_key()
    {
        var e = Rejected(("Agent:Inference:Threads", "many"));
        Assert.Equal("Agent:Inference:Threads", e.Key);
    }

    [Fact]
    public void A_misspelt_key_is_an_error_not_silently_ignored()
    {
        var e = Rejected(("Agent:Inference:Thread", "2"));
        Assert.Contains("Thread", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Out_of_range_values_name_the_key()
    {
        Assert.Equal("Agent:Pipeline:WindowQueue", Rejected(("Agent:Pipeline:WindowQueue", "0")).Key);
        Assert.Equal("Agent:Pipeline:RetryMaxMs", Rejected(("Agent:Pipeline:RetryInitialMs", "500"), ("Agent:Pipeline:RetryMaxMs", "100")).Key);
        Assert.Equal("Agent:Gpio:Driver", Rejected(("Agent:Gpio:Driver", "magic")).Key);
    }

    [Fact]
    public void An_action_must_say_what_triggers_it()
    {
        var e = Rejected(("Agent:Actions:0:Pin", "17"));
        Assert.Equal("Agent:Actions:0", e.Key);
        Assert.Contains("exactly one of Label", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Two_actions_on_one_pin_are_refused()
    {
        var e = Rejected(("Agent:Actions:0:Pin", "17"), ("Agent:Actions:0:Label", "a"), ("Agent:Actions:1:Pin", "17"), ("Agent:Actions:1:Above", "0.5"));
        Assert.Equal("Agent:Actions:1:Pin", e.Key);
    }

    [Fact]
    public void A_malformed_sensor_spec_names_the_key()
    {
        var e = Rejected(("Agent:Sensor", "sim:vibration,fault"));
        Assert.Equal("Agent:Sensor", e.Key);
        Assert.Contains("not key=value", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Sensor_options_are_checked_when_the_sensor_is_built()
    {
        var e = Assert.Throws<ConfigurationException>(() => EdgeMl.Agent.Sensors.SensorFactory.Create("sim:vibration,fault=melted", 1, "Agent:Sensor"));
        Assert.Equal("Agent:Sensor.fault", e.Key);
        var bad = Assert.Throws<ConfigurationException>(() => EdgeMl.Agent.Sensors.SensorFactory.Create("bme280,address=0x99", 1, "Agent:Sensor"));
        Assert.Equal("Agent:Sensor.address", bad.Key);
    }
}
