using System.Globalization;

namespace EdgeMl.Protocol.Text;

/// <summary>
/// The one duration syntax of every EdgeMl program and API: a number and a unit, <c>ms</c>, <c>s</c>, <c>m</c>,
/// <c>h</c> or <c>d</c> (<c>200ms</c>, <c>90s</c>, <c>10m</c>, <c>24h</c>, <c>7d</c>, <c>1.5h</c>); a bare number is seconds. From 1 ms to ten years,
/// so that no value overflows a <see cref="TimeSpan"/> or a timestamp.
/// </summary>
public static class Durations
{
    /// <summary>Longest duration accepted.</summary>
    public static readonly TimeSpan Max = TimeSpan.FromDays(3650);

    /// <summary>Parses <paramref name="text"/>; on failure <paramref name="error"/> says what was expected (without naming the option: the caller does).</summary>
    public static bool TryParse(string? text, out TimeSpan span, out string error, bool allowZero = false)
    {
        span = default;
        error = $"'{text}' is not a duration like 200ms, 90s, 10m, 24h or 7d";
        var t = text?.Trim() ?? "";
        if (t.Length == 0) return false;
        var ms = t.EndsWith("ms", StringComparison.OrdinalIgnoreCase);
        var unit = ms ? 'x' : char.IsAsciiLetter(t[^1]) ? char.ToLowerInvariant(t[^1]) : 's';
        var number = ms ? t[..^2] : char.IsAsciiLetter(t[^1]) ? t[..^1] : t;
        if (!double.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var v) || !double.IsFinite(v)) return false;
        var seconds = unit switch { 'x' => v / 1000, 's' => v, 'm' => v * 60, 'h' => v * 3600, 'd' => v * 86400, _ => double.NaN };
        if (double.IsNaN(seconds)) return false;
        if (seconds > Max.TotalSeconds)
        {
            error = $"'{text}' is longer than the longest duration, {Max.TotalDays:0} days";
            return false;
        }

        if (seconds > 0 && seconds < 0.001)
        {
            error = $"'{text}' is shorter than the shortest duration, 1 ms";
            return false;
        }

        if (seconds == 0 && !allowZero)
        {
            error = $"'{text}' is not a positive duration";
            return false;
        }

        span = TimeSpan.FromSeconds(seconds);
        return true;
    }
}
