using System.Device.I2c;
using Iot.Device.Imu;

namespace EdgeMl.Agent.Sensors.Mpu6050;

/// <summary>
/// An MPU6050 3-axis accelerometer on I2C through Iot.Device.Bindings: channels ax, ay, az in m/s² —
/// the same channels as the simulated machine, so a vibration model runs on the real chip unchanged.
/// Range is ±2 g. After an I/O error the driver is built again (reset, wake-up, id check) on the next read. A chip
/// whose WHO_AM_I is not 0x68 (MPU-6500s and clones answer 0x70, 0x98) is <see cref="SensorMisconfiguredException"/>.
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
            var chip = _chip ??= Open();
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

    /// <summary>WHO_AM_I values of chips sold as MPU-6050 that are not one.</summary>
    private static readonly Dictionary<byte, string> Lookalikes = new()
    {
        [0x70] = "an MPU-6500 or a clone sold as MPU-6050",
        [0x98] = "a clone sold as MPU-6050",
        [0x71] = "an MPU-9250",
        [0x72] = "an MPU-6050 clone",
    };

    private Iot.Device.Imu.Mpu6050 Open()
    {
        var device = openDevice();
        try
        {
            SensorMisconfiguredException.CheckChipId(device, name, "MPU-6050", 0x75, 0x68, Lookalikes);
            return new Iot.Device.Imu.Mpu6050(device);
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    private void Reset()
    {
        try { _chip?.Dispose(); } catch (IOException) { }
        _chip = null;
    }

    public void Dispose() => Reset();
}
