using System.Device.I2c;

namespace EdgeMl.TestUtilities.I2c;

/// <summary>
/// An I2C chip as a register file: the first byte of a write sets the register pointer, further bytes
/// write registers, reads return registers; the pointer auto-increments as on real chips. Subclasses
/// model a chip's behaviour in <see cref="OnRead"/> / <see cref="OnWrite"/>. <see cref="Failing"/> makes
/// every transfer fail as a chip that stopped answering (NACK) does on Linux.
/// </summary>
public abstract class SimulatedI2cDevice(int address) : I2cDevice
{
    protected readonly byte[] Registers = new byte[256];
    private byte _pointer;

    public override I2cConnectionSettings ConnectionSettings { get; } = new(1, address);

    /// <summary>While true, every transfer throws <see cref="IOException"/> ("Remote I/O error").</summary>
    public volatile bool Failing;

    public int Transfers { get; private set; }

    public override void Read(Span<byte> buffer)
    {
        Transfer();
        BeginRead(_pointer);
        for (var i = 0; i < buffer.Length; i++)
        {
            buffer[i] = OnRead(_pointer++);
        }
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        Transfer();
        if (buffer.Length == 0) return;
        _pointer = buffer[0];
        for (var i = 1; i < buffer.Length; i++)
        {
            OnWrite(_pointer++, buffer[i]);
        }
    }

    public override void WriteRead(ReadOnlySpan<byte> writeBuffer, Span<byte> readBuffer)
    {
        Write(writeBuffer);
        Read(readBuffer);
    }

    /// <summary>Called once at the start of each read transfer (a chip latches its data registers here).</summary>
    protected virtual void BeginRead(byte register) { }

    protected virtual byte OnRead(byte register) => Registers[register];

    protected virtual void OnWrite(byte register, byte value) => Registers[register] = value;

    private void Transfer()
    {
        Transfers++;
        if (Failing)
        {
            throw new IOException($"Error 121 performing I2C data transfer to 0x{ConnectionSettings.DeviceAddress:x2} (Remote I/O error)");
        }
    }
}
