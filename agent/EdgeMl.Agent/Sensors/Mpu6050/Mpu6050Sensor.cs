using System.Device.I2c;
using Iot.Device.Imu;

namespace EdgeMl.Agent.Sensors.Mpu6050;

/// <summary>
/// An MPU6050 3-axis accelerometer on I2C through Iot.Device.Bindings: channels ax, ay, az in m/s² —
/// the same channels as the simulated machine, so a vibration model runs on the real chip unchanged.
/// Range is ±2 g. After an I/O error the driver is built again (reset, wake-up, id check) on the next read.
/// </summary>
public sealed class Mpu6050Sensor(Func<I2cDevice> openDevice, string name, double sampleRateHz) : ISensorSource
{
    private static readonly string[] ChannelNames = ["ax", "ay", "az"];
    private Iot.Device.Imu.Mpu6050? _chip;

    public string Name => name;
    public IReadOnlyList<string> Channels => ChannelNames;
    public double SampleRateHz => sampleRateHz;
    public bool IsVirtual => false;

    public bool Read(Span<float> values)
    {
        try
        {
            var chip = _chip ??= new Iot.Device.Imu.Mpu6050(openDevice());
            var a = chip.GetAccelerometer();
            values[0] = a.X;
            values[1] = a.Y;
            values[2] = a.Z;
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or TimeoutException)
        {
            Reset();
            throw new IOException($"{name}: {e.Message}", e);
        }
    }

    private void Reset()
    {
        try { _chip?.Dispose(); } catch (IOException) { }
        _chip = null;
    }

    public void Dispose() => Reset();
}
