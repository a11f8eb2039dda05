using System.Device.Gpio;
using System.Device.Gpio.Drivers;
using EdgeMl.Agent.Configuration;

namespace EdgeMl.Agent.Gpio;

/// <summary>Opens the GPIO controller chosen by <c>Agent:Gpio:Driver</c>.</summary>
public static class GpioControllers
{
    public static GpioController Open(GpioSettings settings) => settings.Driver.ToLowerInvariant() switch
    {
        "simulated" => new GpioController(new SimulatedGpioDriver()),
        "libgpiod" => new GpioController(new LibGpiodDriver(settings.Chip)),
        "sysfs" => new GpioController(new SysFsDriver()),
        _ => new GpioController(),
    };
}
