using System.Device.Gpio;
using EdgeMl.Agent.Gpio;
using EdgeMl.Agent.Sensors;

namespace EdgeMl.Agent.Tests.Sensors;

public class GpioInputSensorTests
{
    [Fact]
    public void Digital_inputs_are_channels_of_zero_or_one_and_pins_are_released_at_dispose()
    {
        var driver = new SimulatedGpioDriver();
        var controller = new GpioController(driver);
        var sensor = SensorFactory.Create("gpio:5+6,rate=50", 1, "Agent:Sensor", gpio: () => controller);
        Assert.Equal(["gpio5", "gpio6"], sensor.Channels);
        Assert.Equal(50, sensor.SampleRateHz);
        Assert.Equal(PinMode.Input, driver.ModeOf(5));

        var values = new float[2];
        driver.SetInput(6, PinValue.High);
        sensor.Read(values);
        Assert.Equal([0f, 1f], values);
        driver.SetInput(5, PinValue.High);
        driver.SetInput(6, PinValue.Low);
        sensor.Read(values);
        Assert.Equal([1f, 0f], values);

        sensor.Dispose();
        Assert.Null(driver.ModeOf(5));
    }

    [Fact]
    public void A_bad_pin_number_names_the_key()
    {
        var e = Assert.Throws<ConfigurationException>(() => SensorFactory.Create("gpio:5+x", 1, "Agent:Sensor", gpio: () => new GpioController(new SimulatedGpioDriver())));
        Assert.Equal("Agent:Sensor", e.Key);
        Assert.Contains("'x' is not a GPIO pin number", e.Message, StringComparison.Ordinal);
    }
}
