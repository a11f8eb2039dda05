using System.CommandLine;
using System.Globalization;
using EdgeMl.Protocol.Text;

namespace EdgeMl.CommandLine;

/// <summary>
/// Option kinds shared by the EdgeMl programs. Each value is checked while parsing, by the protocol's one parser
/// for its kind (<see cref="Durations"/>, <see cref="Sizes"/>, <see cref="HubUrls"/>, <see cref="ModelRefs"/>), so a
/// malformed value is a usage error (exit 2) naming the option before any work starts.
/// </summary>
public static class CliOptions
{
    /// <summary>A text option (<c>--name VALUE</c>).</summary>
    /// <remarks>Given twice, the last one counts (as in configuration files and the hub's own options).</remarks>
    public static Option<string> Text(string name, string description, string valueName, bool required = false) =>
        new(name) { Description = description, HelpName = valueName, Required = required, Arity = ArgumentArity.OneOrMore, CustomParser = LastToken };

    /// <summary>True for an option that takes any text (<see cref="Text"/>, <see cref="Many"/>): nothing to check while parsing.</summary>
    public static bool IsFreeText(Option option) => option is Option<string[]> || (option is Option<string> s && s.CustomParser == LastToken);

    private static readonly Func<System.CommandLine.Parsing.ArgumentResult, string?> LastToken = r => r.Tokens[^1].Value;

    /// <summary>A repeatable text option (<c>--tag K=V --tag K2=V2</c>).</summary>
    public static Option<string[]> Many(string name, string description, string valueName, bool required = false) =>
        new(name) { Description = description, HelpName = valueName, Required = required, AllowMultipleArgumentsPerToken = false };

    /// <summary>An on/off switch (<c>--json</c>).</summary>
    public static Option<bool> Flag(string name, string description) => new(name) { Description = description };

    /// <summary>One of <paramref name="values"/> (completed by the shell).</summary>
    public static Option<string> Choice(string name, string description, params string[] values)
    {
        var o = new Option<string>(name) { Description = description, HelpName = string.Join('|', values), Arity = ArgumentArity.OneOrMore, CustomParser = r => r.Tokens[^1].Value };
        o.AcceptOnlyFromAmong(values);
        return o;
    }

    /// <summary>A duration (<see cref="Durations"/>: <c>90s</c>, <c>10m</c>, <c>24h</c>, <c>7d</c>; a bare number is seconds).</summary>
    /// <param name="min">Shortest accepted (default: any positive, or zero with <paramref name="allowZero"/>).</param>
    /// <param name="max">Longest accepted (default <see cref="Durations.Max"/>).</param>
    public static Option<TimeSpan> Duration(string name, string description, bool required = false, bool allowZero = false, TimeSpan? min = null, TimeSpan? max = null) =>
        Parsed<TimeSpan>(name, description, "DURATION", required, t =>
        {
            if (!Durations.TryParse(t, out var v, out var e, allowZero)) return (false, v, e);
            if (min is { } lo && v < lo) return (false, v, $"'{t}' is shorter than {Show(lo)}");
            if (max is { } hi && v > hi) return (false, v, $"'{t}' is longer than {Show(hi)}");
            return (true, v, "");
        });

    private static string Show(TimeSpan span) =>
        span.TotalDays >= 1 && span.TotalDays % 1 == 0 ? $"{span.TotalDays:0}d" : span.TotalHours >= 1 && span.TotalHours % 1 == 0 ? $"{span.TotalHours:0}h"
        : span.TotalMinutes >= 1 && span.TotalMinutes % 1 == 0 ? $"{span.TotalMinutes:0}m" : $"{span.TotalSeconds:0.###}s";

    /// <summary>A size in bytes (<see cref="Sizes"/>: <c>64KiB</c>, <c>512MB</c>; a bare number is bytes).</summary>
    public static Option<long> Size(string name, string description, bool required = false) =>
        Parsed<long>(name, description, "SIZE", required, t => (Sizes.TryParse(t, out var v, out var e), v, e));

    /// <summary>The hub's address (<see cref="HubUrls"/>: <c>HOST[:PORT]</c>, port 8080 when none, or <c>http(s)://HOST[:PORT]</c>).</summary>
    public static Option<Uri> HubUrl(string name, string description, bool required = false) =>
        Parsed<Uri>(name, description, "URL", required, t => (HubUrls.TryParse(t, out var v, out var e), v, e));

    /// <summary>A model version, <c>NAME@VERSION</c> (<see cref="ModelRefs"/>).</summary>
    public static Argument<ModelRef> ModelArgument(string name, string description)
    {
        var a = new Argument<ModelRef>(name) { Description = description };
        a.CustomParser = r =>
        {
            var text = r.Tokens.Count > 0 ? r.Tokens[^1].Value : "";
            if (ModelRefs.TryParse(text, out var m, out var error)) return m;
            r.AddError($"{name}: {error}");
            return default;
        };
        return a;
    }

    /// <summary>A whole number in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Option<long> Integer(string name, string description, long min = 0, long max = long.MaxValue, string valueName = "N", bool required = false) =>
        Parsed<long>(name, description, valueName, required, t =>
            long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) && v >= min && v <= max
                ? (true, v, "") : (false, 0, max == long.MaxValue ? $"'{t}' is not a whole number of at least {min}" : $"'{t}' is not a whole number from {min} to {max}"));

    /// <summary>A finite number in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Option<double> Number(string name, string description, double min, double max, string valueName = "X", bool required = false) =>
        Parsed<double>(name, description, valueName, required, t =>
            double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) && v >= min && v <= max
                ? (true, v, "") : (false, 0, $"'{t}' is not a number from {min.ToString(CultureInfo.InvariantCulture)} to {max.ToString(CultureInfo.InvariantCulture)}"));

    /// <summary>An option whose text (the last one, when given twice) is turned into <typeparamref name="T"/> by <paramref name="parse"/> (ok, value, error).</summary>
    public static Option<T> Parsed<T>(string name, string description, string valueName, bool required, Func<string, (bool Ok, T Value, string Error)> parse)
    {
        var o = new Option<T>(name) { Description = description, HelpName = valueName, Required = required, Arity = ArgumentArity.OneOrMore };
        o.CustomParser = r =>
        {
            var text = r.Tokens.Count > 0 ? r.Tokens[^1].Value : "";
            var (ok, value, error) = parse(text);
            if (ok) return value;
            r.AddError($"{name}: {error}");
            return default!;
        };
        return o;
    }
}
