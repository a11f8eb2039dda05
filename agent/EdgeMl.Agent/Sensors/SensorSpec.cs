using System.Globalization;

namespace EdgeMl.Agent.Sensors;

/// <summary>
/// A sensor named on the command line or in config: <c>KIND[:ARG][,key=value…]</c>, for example
/// <c>sim:vibration,fault=bearing,fault-at=20</c>, <c>replay:recording.csv</c>, <c>bme280</c>.
/// </summary>
public sealed record SensorSpec(string Kind, string? Argument, IReadOnlyDictionary<string, string> Options)
{
    public static SensorSpec Parse(string text, string where)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            throw new ConfigurationException(where, "a sensor is required, e.g. sim:vibration");
        }

        var parts = text.Split(',');
        var head = parts[0];
        var colon = head.IndexOf(':', StringComparison.Ordinal);
        var kind = (colon < 0 ? head : head[..colon]).Trim().ToLowerInvariant();
        var arg = colon < 0 ? null : head[(colon + 1)..].Trim();
        var options = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var p in parts.Skip(1))
        {
            var eq = p.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new ConfigurationException(where, $"'{p}' in sensor '{text}' is not key=value");
            }

            options[p[..eq].Trim()] = p[(eq + 1)..].Trim();
        }

        return new SensorSpec(kind, arg, options);
    }

    public double GetDouble(string key, double fallback, string where)
    {
        if (!Options.TryGetValue(key, out var s)) return fallback;
        var unit = s.EndsWith('s') && !s.EndsWith("ms", StringComparison.Ordinal) ? s[..^1] : s;
        return double.TryParse(unit, NumberStyles.Float, CultureInfo.InvariantCulture, out var v)
            ? v
            : throw new ConfigurationException($"{where}.{key}", $"'{s}' is not a number");
    }

    public string? GetString(string key) => Options.TryGetValue(key, out var s) ? s : null;
}
