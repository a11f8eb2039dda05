using System.Buffers.Binary;

namespace EdgeMl.TestUtilities.I2c;

/// <summary>
/// An InvenSense MPU6050 as its registers: WHO_AM_I 0x68 at 0x75, PWR_MGMT_1 at 0x6B (sleeps after
/// power-on, bit 7 resets every register), ACCEL_CONFIG at 0x1C (full scale ±2/4/8/16 g in bits 4:3),
/// and big-endian 16-bit accelerometer samples at 0x3B–0x40. While awake, each read of the data
/// registers samples the acceleration a test set, scaled by the selected full-scale range.
/// </summary>
public sealed class SimulatedMpu6050 : SimulatedI2cDevice
{
    public const double StandardGravity = 9.807;

    /// <param name="whoAmI">What WHO_AM_I (0x75) answers: 0x68 for an MPU-6050; clones answer 0x70 or 0x98.</param>
    public SimulatedMpu6050(int address = 0x68, byte whoAmI = 0x68) : base(address)
    {
        WhoAmI = whoAmI;
        PowerOnReset();
    }

    public byte WhoAmI { get; }

    /// <summary>Acceleration in m/s² on x, y, z.</summary>
    public (double X, double Y, double Z) Acceleration { get; set; } = (0, 0, StandardGravity);

    public bool Asleep => (Registers[0x6B] & 0x40) != 0;

    public double LsbPerG => 16384.0 / (1 << ((Registers[0x1C] >> 3) & 0b11));

    protected override void BeginRead(byte register)
    {
        if (register is >= 0x3B and <= 0x40 && !Asleep)
        {
            var (x, y, z) = Acceleration;
            BinaryPrimitives.WriteInt16BigEndian(Registers.AsSpan(0x3B), Raw(x));
            BinaryPrimitives.WriteInt16BigEndian(Registers.AsSpan(0x3D), Raw(y));
            BinaryPrimitives.WriteInt16BigEndian(Registers.AsSpan(0x3F), Raw(z));
        }
    }

    protected override void OnWrite(byte register, byte value)
    {
        if (register == 0x6B && (value & 0x80) != 0)
        {
            PowerOnReset();
            return;
        }

        if (register is 0x75 or (>= 0x3B and <= 0x48))
        {
            return; // read-only
        }

        Registers[register] = value;
    }

    private short Raw(double metresPerSecond2) =>
        (short)Math.Clamp(Math.Round(metresPerSecond2 / StandardGravity * LsbPerG), short.MinValue, short.MaxValue);

    private void PowerOnReset()
    {
        Array.Clear(Registers);
        Registers[0x75] = WhoAmI;
        Registers[0x6B] = 0x40;
    }
}
