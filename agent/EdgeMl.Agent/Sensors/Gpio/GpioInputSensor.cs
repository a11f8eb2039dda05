using System.Device.Gpio;

namespace EdgeMl.Agent.Sensors.Gpio;

/// <summary>Digital inputs through System.Device.Gpio: one channel per pin (<c>gpio17</c>…), 0 or 1.</summary>
public sealed class GpioInputSensor : ISensorSource
{
    private readonly GpioController _controller;
    private readonly int[] _pins;

    public GpioInputSensor(GpioController controller, int[] pins, double sampleRateHz, PinMode mode = PinMode.Input)
    {
        _controller = controller;
        _pins = pins;
        SampleRateHz = sampleRateHz;
        Channels = pins.Select(p => $"gpio{p}").ToArray();
        foreach (var pin in pins)
        {
            controller.OpenPin(pin, mode);
        }
    }

    public string Name => $"gpio:{string.Join(',', _pins)}";
    public IReadOnlyList<string> Channels { get; }
    public double SampleRateHz { get; }
    public bool IsVirtual => false;

    public bool Read(Span<float> values)
    {
        for (var i = 0; i < _pins.Length; i++)
        {
            values[i] = _controller.Read(_pins[i]) == PinValue.High ? 1f : 0f;
        }

        return true;
    }

    public void Dispose()
    {
        foreach (var pin in _pins)
        {
            if (_controller.IsPinOpen(pin)) _controller.ClosePin(pin);
        }
    }
}
