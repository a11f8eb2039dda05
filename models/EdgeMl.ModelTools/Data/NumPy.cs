using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Text;
using System.Text.RegularExpressions;

namespace EdgeMl.ModelTools.Data;

/// <summary>
/// An n-dimensional array read from NumPy: <see cref="Values"/> exact (float64 holds every int32 and every int64 up
/// to 2^53), <see cref="Data"/> the same as float32; <see cref="Dtype"/> as NumPy names it (<c>float32</c>, <c>int64</c>, <c>bool</c> …).
/// </summary>
public sealed record NdArray(long[] Shape, double[] Values, string Dtype)
{
    private float[]? _data;

    public float[] Data => _data ??= Values.Select(v => (float)v).ToArray();
    public long Rows => Shape.Length == 0 ? 1 : Shape[0];
    public int RowLength => (int)(Values.Length / Math.Max(1, Rows));
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
            ZipArchive zip;
            try
            {
                zip = ZipFile.OpenRead(path);
            }
            catch (InvalidDataException e)
            {
                throw new ModelToolException($"{path} is not a readable .npz (zip) file: {e.Message}");
            }

            using var archive = zip;
            var result = new Dictionary<string, NdArray>(StringComparer.Ordinal);
            foreach (var e in archive.Entries.Where(e => e.Name.EndsWith(".npy", StringComparison.Ordinal)))
            {
                using var ms = new MemoryStream();
                try
                {
                    using var s = e.Open();
                    s.CopyTo(ms);
                }
                catch (InvalidDataException x)
                {
                    throw new ModelToolException($"{path}:{e.FullName} cannot be read from the .npz: {x.Message}");
                }

                result[e.Name[..^4]] = Read(ms.ToArray(), $"{path}:{e.FullName}");
            }

            if (result.Count == 0) throw new ModelToolException($"{path}: no .npy arrays inside");
            return result;
        }

        return new Dictionary<string, NdArray> { [Path.GetFileNameWithoutExtension(path)] = Read(InputFiles.ReadAll(path, "data"), path) };
    }

    [GeneratedRegex(@"'descr'\s*:\s*'(?<d>[^']+)'")]
    private static partial Regex Descr();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(?<f>True|False)")]
    private static partial Regex Fortran();

    [GeneratedRegex(@"'shape'\s*:\s*\((?<s>[^)]*)\)")]
    private static partial Regex ShapePattern();

    /// <summary>
    /// Reads one array in NumPy's .npy format (versions 1–3: magic, version, header length, a Python-literal header with
    /// <c>descr</c>, <c>fortran_order</c> and <c>shape</c>, then the data; numpy.org/doc/stable/reference/generated/numpy.lib.format.html).
    /// </summary>
    /// <exception cref="ModelToolException">Not a .npy file, a truncated or malformed header, an unsupported dtype, or too little data; names <paramref name="source"/>.</exception>
    public static NdArray Read(byte[] bytes, string source)
    {
        if (bytes.Length < 6 || !bytes.AsSpan(0, 6).SequenceEqual(Magic)) throw new ModelToolException($"{source} is not a .npy file (no \\x93NUMPY magic)");
        var major = bytes.Length > 6 ? bytes[6] : 0;
        if (major is not (1 or 2 or 3)) throw new ModelToolException($"{source}: .npy format version {major} is not supported (1, 2 or 3), or the file is truncated");
        var offset = major == 1 ? 10 : 12;
        if (bytes.Length < offset) throw new ModelToolException($"{source}: truncated .npy header ({bytes.Length} bytes)");
        var headerLength = major == 1 ? BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8)) : (long)BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
        if (headerLength > bytes.Length - offset) throw new ModelToolException($"{source}: truncated .npy header (it says {headerLength} bytes, {bytes.Length - offset} follow)");
        var header = Encoding.Latin1.GetString(bytes, offset, (int)headerLength);
        var descr = Descr().Match(header).Groups["d"].Value;
        var shapeMatch = ShapePattern().Match(header);
        if (descr.Length < 2 || !shapeMatch.Success) throw new ModelToolException($"{source}: malformed .npy header (no 'descr' or 'shape'): {header.Trim()[..Math.Min(80, header.Trim().Length)]}");
        if (Fortran().Match(header).Groups["f"].Value == "True") throw new ModelToolException($"{source}: Fortran-order arrays are not supported (save with np.ascontiguousarray)");
        var shape = new List<long>();
        foreach (var dim in shapeMatch.Groups["s"].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!long.TryParse(dim, NumberStyles.None, CultureInfo.InvariantCulture, out var d)) throw new ModelToolException($"{source}: shape dimension '{dim}' is not a whole number >= 0");
            shape.Add(d);
        }

        if (shape.Aggregate(1.0, (a, b) => a * b) > Array.MaxLength) throw new ModelToolException($"{source}: shape ({string.Join(", ", shape)}) has more values than one array can hold");
        var count = shape.Aggregate(1L, (a, b) => a * b);
        var shapeArray = shape.ToArray();
        var start = (int)(offset + headerLength);
        var size = descr switch
        {
            "<f4" or "=f4" or "<i4" or "=i4" => 4,
            "<f8" or "=f8" or "<i8" or "=i8" => 8,
            "<f2" or "=f2" or "<i2" or "=i2" => 2,
            "|u1" or "|i1" or "|b1" => 1,
            _ => throw new ModelToolException($"{source}: dtype '{descr}' is not supported (float16/32/64, int8/16/32/64, uint8, bool)"),
        };
        if (bytes.Length - start < count * size) throw new ModelToolException($"{source}: {bytes.Length - start} bytes of data, the header's shape ({string.Join(", ", shape)}) needs {count * size}");
        var values = new double[count];
        var kind = descr[1..];
        for (var i = 0; i < count; i++)
        {
            var at = bytes.AsSpan((int)(start + (i * size)));
            values[i] = kind switch
            {
                "f4" => BinaryPrimitives.ReadSingleLittleEndian(at),
                "f8" => BinaryPrimitives.ReadDoubleLittleEndian(at),
                "f2" => (double)BinaryPrimitives.ReadHalfLittleEndian(at),
                "i4" => BinaryPrimitives.ReadInt32LittleEndian(at),
                "i8" => BinaryPrimitives.ReadInt64LittleEndian(at),
                "i2" => BinaryPrimitives.ReadInt16LittleEndian(at),
                "i1" => (sbyte)at[0],
                _ => at[0],
            };
        }

        var dtype = kind switch { "f4" => "float32", "f8" => "float64", "f2" => "float16", "i4" => "int32", "i8" => "int64", "i2" => "int16", "i1" => "int8", "b1" => "bool", _ => "uint8" };
        return new NdArray(shapeArray, values, dtype);
    }

    /// <summary>Writes a float32 .npy (for tests and for exporting data).</summary>
    public static void Write(string path, long[] shape, float[] data)
    {
        using var f = File.Create(path);
        Write(f, shape, data);
    }

    /// <summary>
    /// Writes one array as .npy to a stream: float32, float16 (<see cref="Half"/>), int64, int32 or bool, its dtype
    /// taken from the array's element type. Shape <c>[]</c> is a scalar.
    /// </summary>
    public static void Write(Stream f, long[] shape, Array data)
    {
        var (descr, bytes) = data switch
        {
            float[] a => ("<f4", System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()).ToArray()),
            Half[] a => ("<f2", System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()).ToArray()),
            long[] a => ("<i8", System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()).ToArray()),
            int[] a => ("<i4", System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()).ToArray()),
            bool[] a => ("|b1", a.Select(b => b ? (byte)1 : (byte)0).ToArray()),
            _ => throw new ArgumentException($"{data.GetType().Name}: float32, float16, int64, int32 or bool", nameof(data)),
        };
        var header = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({string.Join(", ", shape)}{(shape.Length == 1 ? "," : "")}), }}";
        var total = 10 + header.Length + 1;
        header = header.PadRight(header.Length + (64 - total % 64) % 64) + "\n";
        f.Write(Magic);
        f.WriteByte(1);
        f.WriteByte(0);
        Span<byte> len = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)header.Length);
        f.Write(len);
        f.Write(Encoding.Latin1.GetBytes(header));
        f.Write(bytes);
    }

    /// <summary>Writes arrays (name → shape and values, as <see cref="Write(Stream, long[], Array)"/>) as one .npz.</summary>
    public static void WriteNpz(string path, IEnumerable<(string Name, long[] Shape, Array Data)> arrays)
    {
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        foreach (var (name, shape, data) in arrays)
        {
            using var s = zip.CreateEntry(name + ".npy").Open();
            Write(s, shape, data);
        }
    }
}
