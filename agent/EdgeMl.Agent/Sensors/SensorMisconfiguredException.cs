using System.Device.I2c;

namespace EdgeMl.Agent.Sensors;

/// <summary>
/// The sensor answers, but it is not the chip that was configured (a BMP280 where a BME280 was asked for, an
/// MPU-6050 clone with another WHO_AM_I): a configuration error, not a transient fault, so it is not retried. The
/// message names the sensor (bus and address) and the id found.
/// </summary>
public sealed class SensorMisconfiguredException : Exception
{
    public SensorMisconfiguredException()
    {
    }

    public SensorMisconfiguredException(string message) : base(message)
    {
    }

    public SensorMisconfiguredException(string message, Exception innerException) : base(message, innerException)
    {
    }

    /// <summary>
    /// Reads the id register of the chip at <paramref name="device"/>; returns when it is <paramref name="expected"/>.
    /// An id of 0x00 or 0xFF is a bus that nothing drives (an I/O error, retried); any other id is a different chip.
    /// </summary>
    /// <param name="known">What a few other ids are, for the message (e.g. 0x58 → "a BMP280 (use sensor bmp280)").</param>
    /// <exception cref="IOException">Nothing answers sensibly.</exception>
    /// <exception cref="SensorMisconfiguredException">Another chip answers.</exception>
    public static void CheckChipId(I2cDevice device, string sensor, string chip, byte register, byte expected, IReadOnlyDictionary<byte, string> known)
    {
        device.WriteByte(register);
        var id = device.ReadByte();
        if (id == expected) return;
        if (id is 0x00 or 0xFF) throw new IOException($"no {chip} answers (id register 0x{register:X2} reads 0x{id:X2})");
        var what = known.TryGetValue(id, out var name) ? $" ({name})" : "";
        throw new SensorMisconfiguredException(
            $"{sensor}: the chip answers with id 0x{id:X2}{what}, not a {chip} (0x{expected:X2}); check Agent:Sensor (bus, address, kind)");
    }
}
