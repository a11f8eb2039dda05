using EdgeMl.Agent.Sensors.Bme280;
using EdgeMl.TestUtilities.I2c;

namespace EdgeMl.Agent.Tests.Sensors;

/// <summary>The real Iot.Device.Bindings BME280 driver, reading a simulated chip's registers.</summary>
public class Bme280SensorTests
{
    [Fact]
    public void Driver_decodes_the_datasheet_example_registers()
    {
        // BMP280 datasheet, section 3.11.3: adc_T = 519888 → 25.08 °C, adc_P = 415148 → 100653.27 Pa.
        var chip = new SimulatedBme280();
        using var driver = new Iot.Device.Bmxx80.Bme280(chip);
        chip.SetRaw(519888, 415148, 0x8000);

        Assert.True(driver.TryReadTemperature(out var t));
        Assert.True(driver.TryReadPressure(out var p));
        Assert.Equal(25.08, t.DegreesCelsius, 0.005);
        Assert.Equal(1006.53, p.Hectopascals, 0.01);
    }

    [Theory]
    [InlineData(-12.5, 98_000.0, 15.0)]
    [InlineData(21.5, 101_325.0, 40.0)]
    [InlineData(38.25, 104_500.0, 85.5)]
    public void Sensor_reads_the_physical_values_the_registers_encode(double celsius, double pascals, double humidity)
    {
        var chip = new SimulatedBme280 { TemperatureC = celsius, PressurePa = pascals, HumidityPercent = humidity };
        using var sensor = new Bme280Sensor(() => chip, "bme280@1:0x76", 1);
        var values = new float[3];

        Assert.True(sensor.Read(values));

        Assert.Equal(["temperature", "humidity", "pressure"], sensor.Channels);
        Assert.Equal(celsius, values[0], 0.01);
        Assert.Equal(humidity, values[1], 0.05);
        Assert.Equal(pascals / 100, values[2], 0.02);
        Assert.True(chip.Measurements >= 1);
    }

    [Fact]
    public void Sensor_follows_a_changing_temperature()
    {
        var chip = new SimulatedBme280 { TemperatureC = 20 };
        using var sensor = new Bme280Sensor(() => chip, "bme280", 1);
        var values = new float[3];
        sensor.Read(values);
        chip.TemperatureC = 30;
        sensor.Read(values);
        Assert.Equal(30, values[0], 0.01);
    }

    [Fact]
    public void Sensor_rebuilds_the_driver_after_the_chip_stops_answering()
    {
        var chip = new SimulatedBme280 { TemperatureC = 22 };
        var opened = 0;
        using var sensor = new Bme280Sensor(() => { opened++; return chip; }, "bme280@1:0x76", 1);
        var values = new float[3];
        sensor.Read(values);

        chip.Failing = true;
        var e = Assert.Throws<IOException>(() => sensor.Read(values));
        Assert.Contains("bme280@1:0x76", e.Message, StringComparison.Ordinal);
        Assert.Contains("Remote I/O error", e.Message, StringComparison.Ordinal);

        chip.Failing = false;
        chip.TemperatureC = 23;
        Assert.True(sensor.Read(values));
        Assert.Equal(23, values[0], 0.01);
        Assert.Equal(2, opened);
    }

    [Fact]
    public void A_chip_that_a_brown_out_reset_into_sleep_mode_is_noticed_and_initialised_again()
    {
        var chip = new SimulatedBme280 { TemperatureC = 22 };
        var opened = 0;
        using var sensor = new Bme280Sensor(() => { opened++; return chip; }, "bme280@1:0x76", 1);
        var values = new float[3];
        Assert.True(sensor.Read(values));
        Assert.Equal(22, values[0], 0.01);

        // The supply dips: the chip answers as before, but sleeps and measures nothing (ctrl_meas reads 0x00).
        chip.BrownOut();
        chip.TemperatureC = 27;
        var measured = chip.Measurements;
        var e = Assert.Throws<IOException>(() => sensor.Read(values));
        Assert.Equal("bme280@1:0x76: the BME280 is in sleep mode (ctrl_meas 0xF4 reads 0x00), as after a reset by a brown-out: its readings would stay frozen; initialising it again", e.Message);
        Assert.Equal(measured, chip.Measurements);

        // The next read initialises it again (id, calibration, normal mode) and follows the temperature.
        Assert.True(sensor.Read(values));
        Assert.Equal(27, values[0], 0.01);
        Assert.Equal(40, values[1], 0.05);
        Assert.Equal(2, opened);
    }

    [Fact]
    public void Readings_that_stay_identical_while_the_chip_claims_normal_mode_are_noticed_as_frozen()
    {
        var chip = new SimulatedBme280 { TemperatureC = 22 };
        var opened = 0;
        using var sensor = new Bme280Sensor(() => { opened++; return chip; }, "bme280@1:0x76", 1);
        var values = new float[3];
        for (var i = 0; i < 3 * sensor.FrozenReads; i++) Assert.True(sensor.Read(values)); // a working chip's noise: never frozen
        Assert.Equal(1, opened);

        chip.Frozen = true;
        var reads = 0;
        IOException? e = null;
        while (e is null && reads < 2 * sensor.FrozenReads)
        {
            reads++;
            try
            {
                sensor.Read(values);
            }
            catch (IOException x)
            {
                e = x;
            }
        }

        Assert.NotNull(e);
        Assert.Contains("readings are frozen (raw registers 0xF7-0xFC identical 20 reads in a row)", e.Message, StringComparison.Ordinal);
        Assert.InRange(reads, sensor.FrozenReads - 1, sensor.FrozenReads);

        chip.Frozen = false;
        chip.TemperatureC = 24;
        Assert.True(sensor.Read(values));
        Assert.Equal(24, values[0], 0.01);
        Assert.Equal(2, opened);
    }

    [Fact]
    public void A_chip_with_the_wrong_id_is_refused()
    {
        var chip = new SimulatedMpu6050(0x76); // answers 0x00 at 0xD0, not 0x60
        using var sensor = new Bme280Sensor(() => chip, "bme280@1:0x76", 1);
        var e = Assert.Throws<IOException>(() => sensor.Read(new float[3]));
        Assert.Contains("no BME280 answers (id register 0xD0 reads 0x00)", e.Message, StringComparison.Ordinal);
    }
}
