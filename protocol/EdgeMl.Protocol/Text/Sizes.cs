using System.Globalization;

namespace EdgeMl.Protocol.Text;

/// <summary>
/// The one size syntax of every EdgeMl program: a number and a unit — <c>B</c>, <c>KB</c>/<c>MB</c>/<c>GB</c>
/// (powers of 1,000, SI) or <c>KiB</c>/<c>MiB</c>/<c>GiB</c> (powers of 1,024, IEC 80000-13); a bare number is bytes
/// (<c>512MB</c>, <c>1.5GiB</c>, <c>65536</c>). Units are case-insensitive; at most 1 TiB.
/// </summary>
public static class Sizes
{
    /// <summary>Largest size accepted, in bytes (1 TiB).</summary>
    public const long Max = 1L << 40;

    /// <summary>Parses <paramref name="text"/> into bytes; on failure <paramref name="error"/> says what was expected.</summary>
    public static bool TryParse(string? text, out long bytes, out string error)
    {
        bytes = 0;
        error = $"'{text}' is not a size like 65536, 64KiB, 512MB or 1.5GiB";
        var t = text?.Trim() ?? "";
        var split = t.Length;
        while (split > 0 && char.IsAsciiLetter(t[split - 1])) split--;
        var unit = t[split..].ToUpperInvariant();
        long scale = unit switch
        {
            "" or "B" => 1,
            "KB" => 1_000, "MB" => 1_000_000, "GB" => 1_000_000_000,
            "KIB" => 1L << 10, "MIB" => 1L << 20, "GIB" => 1L << 30, "TIB" => 1L << 40,
            _ => 0,
        };
        if (scale == 0 || !double.TryParse(t[..split], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var v) || !double.IsFinite(v)) return false;
        var value = v * scale;
        if (value > Max)
        {
            error = $"'{text}' is larger than the largest size, 1 TiB";
            return false;
        }

        bytes = (long)Math.Round(value);
        return true;
    }
}
