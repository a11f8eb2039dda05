using System.Buffers.Binary;

namespace EdgeMl.TestUtilities.I2c;

/// <summary>
/// A Bosch BME280 as its registers: chip id 0x60 at 0xD0, soft reset at 0xE0, calibration words at
/// 0x88–0xA1 and 0xE1–0xE7 in the datasheet's packing, ctrl_hum 0xF2, ctrl_meas 0xF4, config 0xF5, and the
/// 20-bit pressure/temperature and 16-bit humidity ADC values at 0xF7–0xFE. Physical values set by a test
/// are turned into ADC values by inverting the datasheet's compensation formulas (section 4.2.3, double
/// precision) for this chip's calibration; a measurement latches them — in normal mode at each read, in
/// forced mode once, after which the chip is back in sleep mode. As on a real chip, the least significant bit of the
/// pressure reading moves from one measurement to the next (noise). <see cref="BrownOut"/> resets it as a supply dip
/// does (sleep mode, reset values in the data registers); <see cref="Frozen"/> stops it measuring while its registers
/// still read normal mode.
/// </summary>
public sealed class SimulatedBme280 : SimulatedI2cDevice
{
    // Typical calibration words (T and P from the BMP280 datasheet's worked example).
    public const ushort T1 = 27504; public const short T2 = 26435; public const short T3 = -1000;
    public const ushort P1 = 36477; public const short P2 = -10685; public const short P3 = 3024; public const short P4 = 2855;
    public const short P5 = 140; public const short P6 = -7; public const short P7 = 15500; public const short P8 = -14600; public const short P9 = 6000;
    public const byte H1 = 75; public const short H2 = 362; public const byte H3 = 0; public const short H4 = 313; public const short H5 = 50; public const sbyte H6 = 30;

    private bool _forcedPending;

    /// <param name="chipId">What register 0xD0 answers: 0x60 for a BME280; 0x58 makes it a BMP280 look-alike.</param>
    public SimulatedBme280(int address = 0x76, byte chipId = 0x60) : base(address)
    {
        ChipId = chipId;
        PowerOnReset();
    }

    public byte ChipId { get; }

    public double TemperatureC { get; set; } = 21.5;
    public double PressurePa { get; set; } = 101_325;
    public double HumidityPercent { get; set; } = 40;

    /// <summary>Number of measurements latched into the data registers.</summary>
    public int Measurements { get; private set; }

    /// <summary>While true the chip latches no new measurement, whatever its mode register says.</summary>
    public bool Frozen { get; set; }

    /// <summary>A supply dip: power-on reset (ctrl_meas 0x00, sleep mode; data registers at their reset values).</summary>
    public void BrownOut() => PowerOnReset();

    /// <summary>Sets the ADC registers directly (for datasheet examples), bypassing the physical values.</summary>
    public void SetRaw(int adcT, int adcP, int adcH)
    {
        WriteAdc(adcT, adcP, adcH);
        Measurements++;
    }

    protected override void BeginRead(byte register)
    {
        if (register is >= 0xF7 and <= 0xFE)
        {
            var mode = Registers[0xF4] & 0b11;
            if (!Frozen && (mode == 0b11 || _forcedPending))
            {
                Measure();
                _forcedPending = false;
            }
        }
    }

    protected override void OnWrite(byte register, byte value)
    {
        switch (register)
        {
            case 0xE0 when value == 0xB6:
                PowerOnReset();
                return;
            case 0xF4:
                Registers[0xF4] = value;
                if ((value & 0b11) is 0b01 or 0b10)
                {
                    // Forced mode: one measurement, then back to sleep.
                    _forcedPending = true;
                    Registers[0xF4] = (byte)(value & 0b1111_1100);
                }

                return;
            case 0xF2 or 0xF5:
                Registers[register] = value;
                return;
            default:
                return; // read-only registers ignore writes
        }
    }

    private void PowerOnReset()
    {
        Array.Clear(Registers);
        Registers[0xD0] = ChipId;
        var cal = Registers.AsSpan(0x88);
        BinaryPrimitives.WriteUInt16LittleEndian(cal[0..], T1);
        BinaryPrimitives.WriteInt16LittleEndian(cal[2..], T2);
        BinaryPrimitives.WriteInt16LittleEndian(cal[4..], T3);
        BinaryPrimitives.WriteUInt16LittleEndian(cal[6..], P1);
        BinaryPrimitives.WriteInt16LittleEndian(cal[8..], P2);
        BinaryPrimitives.WriteInt16LittleEndian(cal[10..], P3);
        BinaryPrimitives.WriteInt16LittleEndian(cal[12..], P4);
        BinaryPrimitives.WriteInt16LittleEndian(cal[14..], P5);
        BinaryPrimitives.WriteInt16LittleEndian(cal[16..], P6);
        BinaryPrimitives.WriteInt16LittleEndian(cal[18..], P7);
        BinaryPrimitives.WriteInt16LittleEndian(cal[20..], P8);
        BinaryPrimitives.WriteInt16LittleEndian(cal[22..], P9);
        Registers[0xA1] = H1;
        BinaryPrimitives.WriteInt16LittleEndian(Registers.AsSpan(0xE1), H2);
        Registers[0xE3] = H3;
        // dig_H4 = 0xE4[7:0] << 4 | 0xE5[3:0]; dig_H5 = 0xE6[7:0] << 4 | 0xE5[7:4].
        Registers[0xE4] = (byte)(H4 >> 4);
        Registers[0xE5] = (byte)((H4 & 0x0F) | ((H5 & 0x0F) << 4));
        Registers[0xE6] = (byte)(H5 >> 4);
        Registers[0xE7] = unchecked((byte)H6);
        // ADC reset values: 0x80000 (20-bit) and 0x8000 (16-bit).
        WriteAdc(0x80000, 0x80000, 0x8000);
        _forcedPending = false;
    }

    private void Measure()
    {
        var adcT = Invert(0, (1 << 20) - 1, adc => Temperature(adc).Celsius, TemperatureC, increasing: true);
        var tFine = Temperature(adcT).TFine;
        var adcP = Invert(0, (1 << 20) - 1, adc => Pressure(adc, tFine), PressurePa, increasing: false);
        var adcH = Invert(0, 0xFFFF, adc => Humidity(adc, tFine), HumidityPercent, increasing: true);
        WriteAdc(adcT, adcP ^ (int)((uint)Measurements * 2654435761u >> 30), adcH); // noise: the last two bits (under 0.5 Pa) move
        Measurements++;
    }

    private void WriteAdc(int adcT, int adcP, int adcH)
    {
        Registers[0xF7] = (byte)(adcP >> 12); Registers[0xF8] = (byte)(adcP >> 4); Registers[0xF9] = (byte)((adcP & 0xF) << 4);
        Registers[0xFA] = (byte)(adcT >> 12); Registers[0xFB] = (byte)(adcT >> 4); Registers[0xFC] = (byte)((adcT & 0xF) << 4);
        Registers[0xFD] = (byte)(adcH >> 8); Registers[0xFE] = (byte)adcH;
    }

    private static int Invert(int lo, int hi, Func<int, double> f, double target, bool increasing)
    {
        while (lo < hi)
        {
            var mid = lo + (hi - lo) / 2;
            var below = increasing ? f(mid) < target : f(mid) > target;
            if (below) lo = mid + 1; else hi = mid;
        }

        return lo;
    }

    // Datasheet compensation formulas (double precision).
    public static (double Celsius, double TFine) Temperature(int adcT)
    {
        var var1 = (adcT / 16384.0 - T1 / 1024.0) * T2;
        var var2 = (adcT / 131072.0 - T1 / 8192.0) * (adcT / 131072.0 - T1 / 8192.0) * T3;
        var tFine = var1 + var2;
        return (tFine / 5120.0, tFine);
    }

    public static double Pressure(int adcP, double tFine)
    {
        var var1 = tFine / 2.0 - 64000.0;
        var var2 = var1 * var1 * P6 / 32768.0;
        var2 += var1 * P5 * 2.0;
        var2 = var2 / 4.0 + P4 * 65536.0;
        var1 = (P3 * var1 * var1 / 524288.0 + P2 * var1) / 524288.0;
        var1 = (1.0 + var1 / 32768.0) * P1;
        var p = 1048576.0 - adcP;
        p = (p - var2 / 4096.0) * 6250.0 / var1;
        var1 = P9 * p * p / 2147483648.0;
        var2 = p * P8 / 32768.0;
        return p + (var1 + var2 + P7) / 16.0;
    }

    public static double Humidity(int adcH, double tFine)
    {
        var h = tFine - 76800.0;
        h = (adcH - (H4 * 64.0 + H5 / 16384.0 * h)) * (H2 / 65536.0 * (1.0 + H6 / 67108864.0 * h * (1.0 + H3 / 67108864.0 * h)));
        h *= 1.0 - H1 * h / 524288.0;
        return Math.Clamp(h, 0, 100);
    }
}
