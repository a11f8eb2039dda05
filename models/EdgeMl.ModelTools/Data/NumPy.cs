using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Text;
using System.Text.RegularExpressions;

namespace EdgeMl.ModelTools.Data;

/// <summary>An n-dimensional array read from NumPy, as float32 (any numeric dtype is converted).</summary>
public sealed record NdArray(long[] Shape, float[] Data)
{
    public long Rows => Shape.Length == 0 ? 1 : Shape[0];
    public int RowLength => (int)(Data.Length / Math.Max(1, Rows));
}

/// <summary>Reads <c>.npy</c> (format 1.0–3.0, C order, little-endian numeric dtypes) and <c>.npz</c> (a zip of them).</summary>
public static partial class NumPy
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public static Dictionary<string, NdArray> Load(string path)
    {
        if (!File.Exists(path)) throw new ModelToolException($"'{path}' does not exist");
        if (path.EndsWith(".npz", StringComparison.OrdinalIgnoreCase))
        {
            using var zip = ZipFile.OpenRead(path);
            var result = new Dictionary<string, NdArray>(StringComparer.Ordinal);
            foreach (var e in zip.Entries.Where(e => e.Name.EndsWith(".npy", StringComparison.Ordinal)))
            {
                using var s = e.Open();
                using var ms = new MemoryStream();
                s.CopyTo(ms);
                result[e.Name[..^4]] = Read(ms.ToArray(), $"{path}:{e.FullName}");
            }

            if (result.Count == 0) throw new ModelToolException($"{path}: no .npy arrays inside");
            return result;
        }

        return new Dictionary<string, NdArray> { [Path.GetFileNameWithoutExtension(path)] = Read(File.ReadAllBytes(path), path) };
    }

    [GeneratedRegex(@"'descr'\s*:\s*'(?<d>[^']+)'")]
    private static partial Regex Descr();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(?<f>True|False)")]
    private static partial Regex Fortran();

    [GeneratedRegex(@"'shape'\s*:\s*\((?<s>[^)]*)\)")]
    private static partial Regex ShapePattern();

    public static NdArray Read(byte[] bytes, string source)
    {
        if (bytes.Length < 10 || !bytes.AsSpan(0, 6).SequenceEqual(Magic)) throw new ModelToolException($"{source} is not a .npy file (no \\x93NUMPY magic)");
        var major = bytes[6];
        int headerLength, offset;
        if (major == 1) { headerLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8)); offset = 10; }
        else { headerLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8)); offset = 12; }
        var header = Encoding.Latin1.GetString(bytes, offset, headerLength);
        var descr = Descr().Match(header).Groups["d"].Value;
        if (Fortran().Match(header).Groups["f"].Value == "True") throw new ModelToolException($"{source}: Fortran-order arrays are not supported (save with np.ascontiguousarray)");
        var shape = ShapePattern().Match(header).Groups["s"].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(x => long.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        var count = shape.Aggregate(1L, (a, b) => a * b);
        var start = offset + headerLength;
        var size = descr switch
        {
            "<f4" or "=f4" or "<i4" or "=i4" => 4,
            "<f8" or "=f8" or "<i8" or "=i8" => 8,
            "<f2" or "=f2" or "<i2" or "=i2" => 2,
            "|u1" or "|i1" or "|b1" => 1,
            _ => throw new ModelToolException($"{source}: dtype '{descr}' is not supported (float16/32/64, int8/16/32/64, uint8, bool)"),
        };
        if (bytes.Length - start < count * size) throw new ModelToolException($"{source}: {bytes.Length - start} bytes of data, the header's shape ({string.Join(", ", shape)}) needs {count * size}");
        var values = new float[count];
        var kind = descr[1..];
        for (var i = 0; i < count; i++)
        {
            var at = bytes.AsSpan(start + i * size);
            values[i] = kind switch
            {
                "f4" => BinaryPrimitives.ReadSingleLittleEndian(at),
                "f8" => (float)BinaryPrimitives.ReadDoubleLittleEndian(at),
                "f2" => (float)BinaryPrimitives.ReadHalfLittleEndian(at),
                "i4" => BinaryPrimitives.ReadInt32LittleEndian(at),
                "i8" => BinaryPrimitives.ReadInt64LittleEndian(at),
                "i2" => BinaryPrimitives.ReadInt16LittleEndian(at),
                "i1" => (sbyte)at[0],
                _ => at[0],
            };
        }

        return new NdArray(shape, values);
    }

    /// <summary>Writes a float32 .npy (for tests and for exporting data).</summary>
    public static void Write(string path, long[] shape, float[] data)
    {
        var header = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({string.Join(", ", shape)}{(shape.Length == 1 ? "," : "")}), }}";
        var total = 10 + header.Length + 1;
        header = header.PadRight(header.Length + (64 - total % 64) % 64) + "\n";
        using var f = File.Create(path);
        f.Write(Magic);
        f.WriteByte(1);
        f.WriteByte(0);
        Span<byte> len = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)header.Length);
        f.Write(len);
        f.Write(Encoding.Latin1.GetBytes(header));
        f.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()));
    }
}
