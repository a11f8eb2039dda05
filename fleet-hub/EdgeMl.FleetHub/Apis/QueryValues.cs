using System.Globalization;

namespace EdgeMl.FleetHub.Apis;

/// <summary>
/// Query-string values read strictly: a value that is malformed, out of range or given twice is refused with a message
/// naming the parameter and what it may be (the endpoint answers 400 with it); nothing is clamped or ignored silently.
/// An absent parameter takes the documented default. A parameter the endpoint does not take is refused before the
/// endpoint runs (<see cref="QueryParameters"/>).
/// </summary>
public static class QueryValues
{
    /// <summary>A parameter given at most once: (its value or null, null) or (null, the error).</summary>
    public static (string? Value, string? Error) Single(IQueryCollection query, string name)
    {
        var values = query[name];
        return values.Count switch
        {
            0 => (null, null),
            1 => (values[0], null),
            _ => (null, $"{name} is given {values.Count} times; give it once"),
        };
    }

    /// <summary>A whole number in [<paramref name="min"/>, <paramref name="max"/>]; <paramref name="fallback"/> when absent.</summary>
    public static bool TryInt(IQueryCollection query, string name, int min, int max, int fallback, out int value, out string? error)
    {
        value = fallback;
        var (text, e) = Single(query, name);
        error = e;
        if (e is not null) return false;
        if (text is null) return true;
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value) && value >= min && value <= max) return true;
        value = fallback;
        error = $"{name} '{Printable(text)}' is not a whole number from {min} to {max}";
        return false;
    }

    /// <summary>One of <paramref name="allowed"/> (exact); <paramref name="fallback"/> when absent.</summary>
    public static bool TryChoice(IQueryCollection query, string name, IReadOnlyList<string> allowed, string? fallback, out string? value, out string? error)
    {
        value = fallback;
        var (text, e) = Single(query, name);
        error = e;
        if (e is not null) return false;
        if (text is null) return true;
        if (allowed.Contains(text, StringComparer.Ordinal))
        {
            value = text;
            return true;
        }

        error = $"{name} '{Printable(text)}' is not one of {string.Join(", ", allowed)}";
        return false;
    }

    /// <summary>
    /// A free-text filter: at most <paramref name="maxLength"/> characters, no control characters; null when absent or
    /// empty (an empty filter filters nothing, as it always did).
    /// </summary>
    public static bool TryText(IQueryCollection query, string name, int maxLength, out string? value, out string? error)
    {
        value = null;
        var (text, e) = Single(query, name);
        error = e;
        if (e is not null) return false;
        if (string.IsNullOrEmpty(text)) return true;
        if (text.Length > maxLength || text.Any(char.IsControl))
        {
            error = $"{name} must be at most {maxLength} characters without control characters";
            return false;
        }

        value = text;
        return true;
    }

    /// <summary>
    /// A time: ISO 8601 (<c>2026-11-30T06:00:00Z</c> or a day <c>2026-11-30</c>; without an offset it is UTC) or a duration back from
    /// <paramref name="now"/> (<c>24h</c>, <see cref="Protocol.Text.Durations"/>); null when absent.
    /// </summary>
    public static bool TryTime(IQueryCollection query, string name, DateTimeOffset now, out DateTimeOffset? value, out string? error)
    {
        value = null;
        var (text, e) = Single(query, name);
        error = e;
        if (e is not null) return false;
        if (text is null) return true;
        if (text.Length <= 64 && text.Contains('-', StringComparison.Ordinal) && text.Contains('T', StringComparison.Ordinal)
            && DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var t))
        {
            value = t;
            return true;
        }

        if (DateTimeOffset.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var day))
        {
            value = day; // a day: its start, UTC
            return true;
        }

        if (text.Length <= 32 && Protocol.Text.Durations.TryParse(text, out var ago, out _) && now - DateTimeOffset.MinValue > ago)
        {
            value = now - ago;
            return true;
        }

        error = $"{name} '{Printable(text)}' is not a time like 2026-11-30T06:00:00Z, a day like 2026-11-30, or a duration back from now like 24h";
        return false;
    }

    /// <summary>A value as it may be echoed in an error: at most 40 characters, control characters as '?'.</summary>
    public static string Printable(string s) => new string(s.Take(40).Select(c => char.IsControl(c) ? '?' : c).ToArray()) + (s.Length > 40 ? "…" : "");
}
