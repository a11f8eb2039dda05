using System.Buffers.Binary;

namespace EdgeMl.Protocol.Packages;

/// <summary>
/// Tensor element types a manifest may name for constant inputs and state tensors, as ONNX names them
/// (<c>float32</c>, <c>float64</c>, <c>float16</c>, <c>int64</c>, <c>int32</c>, <c>int16</c>, <c>int8</c>, <c>uint8</c>,
/// <c>bool</c>), their sizes, and how a JSON number becomes the element's little-endian bytes.
/// </summary>
public static class ElementTypes
{
    public const string Float32 = "float32";

    /// <summary>Every type a constant or state tensor may have.</summary>
    public static IReadOnlyList<string> All { get; } = ["float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"];

    /// <summary>
    /// Largest integer a JSON number (an IEEE double) carries exactly and unambiguously, 2^53 − 1 (JavaScript's
    /// <c>Number.MAX_SAFE_INTEGER</c>): int64 values beyond it are refused. 2^53 itself is refused too, because
    /// 2^53 + 1 written in a manifest reads back as 2^53 and would be used silently rounded.
    /// </summary>
    public const double MaxExactInteger = 9007199254740991d; // 2^53 - 1

    public static bool IsKnown(string type) => All.Contains(type);

    /// <summary>Bytes per element of <paramref name="type"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="type"/> is not one of <see cref="All"/>.</exception>
    public static int Size(string type) => type switch
    {
        "float64" or "int64" => 8,
        "float32" or "int32" => 4,
        "float16" or "int16" => 2,
        "int8" or "uint8" or "bool" => 1,
        _ => throw new ArgumentException($"'{type}' is not a supported element type ({string.Join(", ", All)})", nameof(type)),
    };

    /// <summary>Why <paramref name="value"/> cannot be an element of <paramref name="type"/>, or null when it can.</summary>
    public static string? Check(string type, double value)
    {
        if (!double.IsFinite(value)) return $"{value} is not a finite number";
        return type switch
        {
            "float32" => Math.Abs(value) > float.MaxValue ? $"{value} is outside float32's range" : null,
            "float16" => Math.Abs(value) > 65504 ? $"{value} is outside float16's range (±65504)" : null,
            "float64" => null,
            "bool" => value is 0 or 1 ? null : $"{value} is not a bool (0 or 1)",
            "int64" => Integer(value, -MaxExactInteger, MaxExactInteger, "int64 (as a JSON number: ±(2^53 − 1))"),
            "int32" => Integer(value, int.MinValue, int.MaxValue, "int32"),
            "int16" => Integer(value, short.MinValue, short.MaxValue, "int16"),
            "int8" => Integer(value, sbyte.MinValue, sbyte.MaxValue, "int8"),
            "uint8" => Integer(value, 0, 255, "uint8"),
            _ => $"'{type}' is not a supported element type",
        };
    }

    private static string? Integer(double v, double min, double max, string what) =>
        Math.Floor(v) != v ? $"{v} is not an integer ({what} expected)"
        : v < min || v > max ? $"{v} is outside the range of {what}"
        : null;

    /// <summary>
    /// Writes <paramref name="values"/> as <paramref name="elements"/> elements of <paramref name="type"/> into
    /// <paramref name="destination"/> (little-endian, as ONNX Runtime reads tensors): no values means zeros, one value
    /// fills every element, otherwise one value per element. Values are assumed checked with <see cref="Check"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The counts or the destination's size do not fit.</exception>
    public static void Encode(string type, IReadOnlyList<double> values, long elements, Span<byte> destination)
    {
        var size = Size(type);
        if (destination.Length != elements * size) throw new ArgumentException($"{elements} {type} elements need {elements * size} bytes, the buffer has {destination.Length}", nameof(destination));
        if (values.Count is not (0 or 1) && values.Count != elements) throw new ArgumentException($"{values.Count} values for {elements} elements", nameof(values));
        destination.Clear();
        if (values.Count == 0) return;
        for (var i = 0; i < elements; i++)
        {
            var v = values.Count == 1 ? values[0] : values[(int)i];
            var at = destination.Slice((int)(i * size), size);
            switch (type)
            {
                case "float32": BinaryPrimitives.WriteSingleLittleEndian(at, (float)v); break;
                case "float64": BinaryPrimitives.WriteDoubleLittleEndian(at, v); break;
                case "float16": BinaryPrimitives.WriteHalfLittleEndian(at, (Half)v); break;
                case "int64": BinaryPrimitives.WriteInt64LittleEndian(at, (long)v); break;
                case "int32": BinaryPrimitives.WriteInt32LittleEndian(at, (int)v); break;
                case "int16": BinaryPrimitives.WriteInt16LittleEndian(at, (short)v); break;
                case "int8": at[0] = unchecked((byte)(sbyte)v); break;
                case "uint8": at[0] = (byte)v; break;
                case "bool": at[0] = v != 0 ? (byte)1 : (byte)0; break;
            }
        }
    }
}
