using System.Device.I2c;

namespace EdgeMl.Agent.Sensors.Bmp280;

/// <summary>
/// A BMP280 on I2C through Iot.Device.Bindings: channels temperature (°C) and pressure (hPa) — the BME280's sibling
/// without humidity, often sold in its place. Another chip id is <see cref="SensorMisconfiguredException"/>
/// (<see cref="Bmx280Sensor{TChip}"/>: normal mode, rebuilt after an I/O error).
/// </summary>
public sealed class Bmp280Sensor(Func<I2cDevice> openDevice, string name, double sampleRateHz)
    : Bmx280Sensor<Iot.Device.Bmxx80.Bmp280>(openDevice, name, sampleRateHz, "BMP280", 0x58, Lookalikes, ["temperature", "pressure"])
{
    private static readonly Dictionary<byte, string> Lookalikes = new()
    {
        [0x60] = "a BME280: use sensor bme280 (it has humidity too)",
        [0x55] = "a BMP180",
        [0x61] = "a BME680",
    };

    protected override Iot.Device.Bmxx80.Bmp280 Create(I2cDevice device) => new(device);
}
