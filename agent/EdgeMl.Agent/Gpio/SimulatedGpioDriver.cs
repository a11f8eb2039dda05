using System.Device.Gpio;

namespace EdgeMl.Agent.Gpio;

/// <summary>
/// A GPIO chip in memory, for development machines without pins and for tests: outputs keep what was
/// written (and raise <see cref="PinWritten"/>), inputs read what <see cref="SetInput"/> set.
/// Selected with <c>Gpio:Driver=simulated</c>.
/// </summary>
public sealed class SimulatedGpioDriver : GpioDriver
{
    private readonly Lock _gate = new();
    private readonly Dictionary<int, PinMode> _modes = [];
    private readonly Dictionary<int, PinValue> _values = [];

    public event Action<int, PinValue>? PinWritten;

    protected override int PinCount => 64;

    public PinValue Get(int pin)
    {
        lock (_gate) return _values.TryGetValue(pin, out var v) ? v : PinValue.Low;
    }

    public PinMode? ModeOf(int pin)
    {
        lock (_gate) return _modes.TryGetValue(pin, out var m) ? m : null;
    }

    public void SetInput(int pin, PinValue value)
    {
        lock (_gate) _values[pin] = value;
    }

    protected override void OpenPin(int pinNumber)
    {
        lock (_gate) _modes.TryAdd(pinNumber, PinMode.Input);
    }

    protected override void ClosePin(int pinNumber)
    {
        lock (_gate) _modes.Remove(pinNumber);
    }

    protected override void SetPinMode(int pinNumber, PinMode mode)
    {
        lock (_gate) _modes[pinNumber] = mode;
    }

    protected override PinMode GetPinMode(int pinNumber)
    {
        lock (_gate) return _modes.TryGetValue(pinNumber, out var m) ? m : PinMode.Input;
    }

    protected override bool IsPinModeSupported(int pinNumber, PinMode mode) => true;

    protected override PinValue Read(int pinNumber) => Get(pinNumber);

    protected override void Write(int pinNumber, PinValue value)
    {
        lock (_gate)
        {
            if (!_modes.TryGetValue(pinNumber, out var mode) || mode != PinMode.Output)
            {
                throw new InvalidOperationException($"GPIO {pinNumber} is not an output");
            }

            _values[pinNumber] = value;
        }

        PinWritten?.Invoke(pinNumber, value);
    }

    protected override WaitForEventResult WaitForEvent(int pinNumber, PinEventTypes eventTypes, CancellationToken cancellationToken) =>
        throw new NotSupportedException("the simulated GPIO driver does not raise pin events");

    protected override void AddCallbackForPinValueChangedEvent(int pinNumber, PinEventTypes eventTypes, PinChangeEventHandler callback) =>
        throw new NotSupportedException("the simulated GPIO driver does not raise pin events");

    protected override void RemoveCallbackForPinValueChangedEvent(int pinNumber, PinChangeEventHandler callback) { }
}
