using System.Device.I2c;
using Iot.Device.Bmxx80;

namespace EdgeMl.Agent.Sensors.Bme280;

/// <summary>
/// A BME280 on I2C through Iot.Device.Bindings: channels temperature (°C), humidity (%RH), pressure (hPa). A chip with
/// another id (a BMP280 is often sold as a BME280) is <see cref="SensorMisconfiguredException"/>, not retried
/// (<see cref="Bmx280Sensor{TChip}"/>: normal mode, rebuilt after an I/O error).
/// </summary>
public sealed class Bme280Sensor(Func<I2cDevice> openDevice, string name, double sampleRateHz)
    : Bmx280Sensor<Iot.Device.Bmxx80.Bme280>(openDevice, name, sampleRateHz, "BME280", 0x60, Lookalikes, ["temperature", "humidity", "pressure"])
{
    /// <summary>Chips that answer where a BME280 was configured (Bosch chip ids).</summary>
    private static readonly Dictionary<byte, string> Lookalikes = new()
    {
        [0x56] = "a BMP280 sample: temperature and pressure, no humidity; use sensor bmp280",
        [0x57] = "a BMP280 sample: temperature and pressure, no humidity; use sensor bmp280",
        [0x58] = "a BMP280: temperature and pressure, no humidity; use sensor bmp280",
        [0x55] = "a BMP180",
        [0x61] = "a BME680",
    };

    protected override Iot.Device.Bmxx80.Bme280 Create(I2cDevice device) => new(device) { HumiditySampling = Sampling.Standard };

    protected override bool ReadMore(Iot.Device.Bmxx80.Bme280 chip, Span<float> values)
    {
        if (!chip.TryReadHumidity(out var h)) return false;
        values[1] = h.Unit == UnitsNet.Units.RelativeHumidityUnit.Percent ? (float)h.Value : throw WrongUnit("humidity", h.Unit);
        return true;
    }
}
