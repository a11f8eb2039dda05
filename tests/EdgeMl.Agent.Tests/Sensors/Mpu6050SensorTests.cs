using EdgeMl.Agent.Sensors.Mpu6050;
using EdgeMl.TestUtilities.I2c;

namespace EdgeMl.Agent.Tests.Sensors;

/// <summary>The real Iot.Device.Bindings MPU6050 driver, reading a simulated chip's registers.</summary>
public class Mpu6050SensorTests
{
    [Fact]
    public void Sensor_wakes_the_chip_and_reads_acceleration_in_metres_per_second_squared()
    {
        var chip = new SimulatedMpu6050 { Acceleration = (1.25, -3.5, 9.807) };
        using var sensor = new Mpu6050Sensor(() => chip, "mpu6050@1:0x68", 100);
        var values = new float[3];

        Assert.True(sensor.Read(values));

        Assert.False(chip.Asleep);
        Assert.Equal(16384, chip.LsbPerG); // the driver selects ±2 g
        var lsb = SimulatedMpu6050.StandardGravity / chip.LsbPerG;
        Assert.Equal(1.25, values[0], lsb);
        Assert.Equal(-3.5, values[1], lsb);
        Assert.Equal(9.807, values[2], lsb);
    }

    [Fact]
    public void Acceleration_beyond_full_scale_saturates_as_on_the_chip()
    {
        var chip = new SimulatedMpu6050 { Acceleration = (50, 0, 0) };
        using var sensor = new Mpu6050Sensor(() => chip, "mpu6050", 100);
        var values = new float[3];
        sensor.Read(values);
        Assert.Equal(2 * SimulatedMpu6050.StandardGravity, values[0], 0.01);
    }

    [Fact]
    public void Sensor_recovers_after_a_nack()
    {
        var chip = new SimulatedMpu6050 { Acceleration = (0, 0, 9.807) };
        using var sensor = new Mpu6050Sensor(() => chip, "mpu6050@1:0x68", 100);
        var values = new float[3];
        sensor.Read(values);
        chip.Failing = true;
        Assert.Throws<IOException>(() => sensor.Read(values));
        chip.Failing = false;
        chip.Acceleration = (0, 4.9, 9.807);
        Assert.True(sensor.Read(values));
        Assert.Equal(4.9, values[1], 0.01);
    }
}
