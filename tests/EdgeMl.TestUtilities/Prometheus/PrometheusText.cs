using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace EdgeMl.TestUtilities.Prometheus;

/// <summary>One sample line: metric name, labels (sorted by name), value.</summary>
public sealed record PromSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value)
{
    public string Label(string name) => Labels.TryGetValue(name, out var v) ? v : "";
}

/// <summary>
/// A strict parser of the Prometheus text exposition format 0.0.4
/// (https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format), written against the spec for the
/// tests (there is no official .NET parser): <c># HELP</c>/<c># TYPE</c> lines, label values with the three escapes
/// (<c>\\</c>, <c>\"</c>, <c>\n</c>), Go float syntax (<c>+Inf</c>, <c>-Inf</c>, <c>NaN</c>), optional timestamps. Beyond
/// parsing it checks what a scraper relies on: a TYPE comes before its samples and once per family, a family's lines are
/// contiguous, no series twice, counters are not negative, and a histogram's buckets are cumulative, end in <c>+Inf</c>
/// and equal its <c>_count</c>. A violation throws <see cref="FormatException"/> naming the line.
/// <see cref="Promtool"/> runs Prometheus's own linter on the same text where it is available.
/// </summary>
public sealed class PrometheusText
{
    private readonly List<PromSample> _samples = [];
    private readonly Dictionary<string, string> _types = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _help = new(StringComparer.Ordinal);

    public IReadOnlyList<PromSample> Samples => _samples;

    /// <summary>Family name → type (counter, gauge, histogram, summary, untyped).</summary>
    public IReadOnlyDictionary<string, string> Types => _types;

    public IReadOnlyDictionary<string, string> Help => _help;

    public static PrometheusText Parse(string text)
    {
        var result = new PrometheusText();
        var seenSeries = new HashSet<string>(StringComparer.Ordinal);
        var finishedFamilies = new HashSet<string>(StringComparer.Ordinal);
        string? currentFamily = null;
        var lines = text.Split('\n');
        if (text.Length > 0 && !text.EndsWith('\n')) throw new FormatException("the exposition does not end with a line feed");
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            var where = $"line {i + 1} '{(line.Length > 120 ? line[..120] + "…" : line)}'";
            if (line.Length == 0) continue;
            if (line[0] == '#')
            {
                var parts = line.Split(' ', 4);
                if (parts.Length >= 3 && parts[1] is "HELP" or "TYPE")
                {
                    var family = parts[2];
                    CheckName(family, where);
                    if (parts[1] == "TYPE")
                    {
                        var type = parts.Length == 4 ? parts[3] : throw new FormatException($"{where}: TYPE without a type");
                        if (type is not ("counter" or "gauge" or "histogram" or "summary" or "untyped")) throw new FormatException($"{where}: unknown type '{type}'");
                        if (!result._types.TryAdd(family, type)) throw new FormatException($"{where}: a second TYPE for {family}");
                        if (result._samples.Any(s => FamilyOf(s.Name, result._types) == family)) throw new FormatException($"{where}: TYPE after samples of {family}");
                    }
                    else
                    {
                        if (!result._help.TryAdd(family, parts.Length == 4 ? Unescape(parts[3], help: true, where) : "")) throw new FormatException($"{where}: a second HELP for {family}");
                    }

                    Switch(family);
                }

                continue; // other comments are allowed anywhere
            }

            var sample = ParseSample(line, where);
            var fam = FamilyOf(sample.Name, result._types);
            Switch(fam);
            var key = sample.Name + "{" + string.Join(",", sample.Labels.Select(l => $"{l.Key}={l.Value}")) + "}";
            if (!seenSeries.Add(key)) throw new FormatException($"{where}: series {key} appears twice");
            if (result._types.GetValueOrDefault(fam) == "counter" && (sample.Value < 0 || double.IsNaN(sample.Value)))
            {
                throw new FormatException($"{where}: counter {sample.Name} is {sample.Value}");
            }

            result._samples.Add(sample);
            continue;

            void Switch(string family)
            {
                if (currentFamily == family) return;
                if (currentFamily is not null) finishedFamilies.Add(currentFamily);
                if (finishedFamilies.Contains(family)) throw new FormatException($"{where}: lines of {family} are not together");
                currentFamily = family;
            }
        }

        result.CheckHistograms();
        return result;
    }

    private void CheckHistograms()
    {
        foreach (var family in _types.Where(t => t.Value == "histogram").Select(t => t.Key))
        {
            var buckets = _samples.Where(s => s.Name == family + "_bucket")
                .GroupBy(s => string.Join(",", s.Labels.Where(l => l.Key != "le").Select(l => $"{l.Key}={l.Value}")), StringComparer.Ordinal);
            foreach (var series in buckets)
            {
                var ordered = series.Select(s => (Le: ParseFloat(s.Label("le"), $"{family} le"), s.Value)).OrderBy(b => b.Le).ToList();
                if (!double.IsPositiveInfinity(ordered[^1].Le)) throw new FormatException($"{family}{{{series.Key}}}: no le=\"+Inf\" bucket");
                for (var b = 1; b < ordered.Count; b++)
                {
                    if (ordered[b].Value < ordered[b - 1].Value) throw new FormatException($"{family}{{{series.Key}}}: buckets are not cumulative at le={ordered[b].Le}");
                }

                var count = _samples.SingleOrDefault(s => s.Name == family + "_count" && Key(s) == series.Key)
                            ?? throw new FormatException($"{family}{{{series.Key}}}: no _count");
                if (count.Value != ordered[^1].Value) throw new FormatException($"{family}{{{series.Key}}}: _count {count.Value} != +Inf bucket {ordered[^1].Value}");
                if (!_samples.Any(s => s.Name == family + "_sum" && Key(s) == series.Key)) throw new FormatException($"{family}{{{series.Key}}}: no _sum");
            }
        }

        static string Key(PromSample s) => string.Join(",", s.Labels.Select(l => $"{l.Key}={l.Value}"));
    }

    /// <summary>The family a sample belongs to: its name, or for <c>_bucket</c>/<c>_sum</c>/<c>_count</c>/<c>_created</c> the histogram or summary it is part of.</summary>
    private static string FamilyOf(string name, IReadOnlyDictionary<string, string> types)
    {
        foreach (var suffix in new[] { "_bucket", "_sum", "_count", "_created" })
        {
            if (name.EndsWith(suffix, StringComparison.Ordinal) && types.GetValueOrDefault(name[..^suffix.Length]) is "histogram" or "summary" or "counter")
            {
                return name[..^suffix.Length];
            }
        }

        return name;
    }

    private static PromSample ParseSample(string line, string where)
    {
        var i = 0;
        while (i < line.Length && line[i] is not ('{' or ' ' or '\t')) i++;
        var name = line[..i];
        CheckName(name, where);
        var labels = new SortedDictionary<string, string>(StringComparer.Ordinal);
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (true)
            {
                SkipBlanks(line, ref i);
                if (i >= line.Length) throw new FormatException($"{where}: labels not closed");
                if (line[i] == '}')
                {
                    i++;
                    break;
                }

                var start = i;
                while (i < line.Length && line[i] is not ('=' or ' ' or '\t')) i++;
                var labelName = line[start..i];
                if (labelName.Length == 0 || !(char.IsAsciiLetter(labelName[0]) || labelName[0] == '_') || !labelName.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
                {
                    throw new FormatException($"{where}: '{labelName}' is not a label name");
                }

                SkipBlanks(line, ref i);
                if (i >= line.Length || line[i] != '=') throw new FormatException($"{where}: '=' expected after label {labelName}");
                i++;
                SkipBlanks(line, ref i);
                if (i >= line.Length || line[i] != '"') throw new FormatException($"{where}: label {labelName}'s value is not quoted");
                i++;
                var value = new StringBuilder();
                while (true)
                {
                    if (i >= line.Length) throw new FormatException($"{where}: label {labelName}'s value is not closed");
                    var c = line[i++];
                    if (c == '"') break;
                    if (c == '\\')
                    {
                        if (i >= line.Length) throw new FormatException($"{where}: a lone backslash");
                        value.Append(line[i++] switch
                        {
                            '\\' => '\\',
                            '"' => '"',
                            'n' => '\n',
                            var other => throw new FormatException($"{where}: '\\{other}' is not an escape in a label value"),
                        });
                    }
                    else
                    {
                        value.Append(c);
                    }
                }

                if (!labels.TryAdd(labelName, value.ToString())) throw new FormatException($"{where}: label {labelName} twice");
                SkipBlanks(line, ref i);
                if (i < line.Length && line[i] == ',') i++;
                else if (i < line.Length && line[i] != '}') throw new FormatException($"{where}: ',' or '}}' expected");
            }
        }

        var rest = line[i..].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        if (rest.Length is < 1 or > 2) throw new FormatException($"{where}: a value (and optionally a timestamp) expected after the labels");
        var sampleValue = ParseFloat(rest[0], where);
        if (rest.Length == 2 && !long.TryParse(rest[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _))
        {
            throw new FormatException($"{where}: timestamp '{rest[1]}' is not an integer (milliseconds)");
        }

        return new PromSample(name, labels, sampleValue);
    }

    private static double ParseFloat(string s, string where) => s switch
    {
        "+Inf" or "Inf" => double.PositiveInfinity,
        "-Inf" => double.NegativeInfinity,
        "NaN" => double.NaN,
        _ when double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) => v,
        _ => throw new FormatException($"{where}: '{s}' is not a number"),
    };

    private static void CheckName(string name, string where)
    {
        if (name.Length == 0 || !(char.IsAsciiLetter(name[0]) || name[0] is '_' or ':') || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or ':'))
        {
            throw new FormatException($"{where}: '{name}' is not a metric name");
        }
    }

    private static void SkipBlanks(string line, ref int i)
    {
        while (i < line.Length && line[i] is ' ' or '\t') i++;
    }

    private static string Unescape(string s, bool help, string where)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] != '\\' || i + 1 == s.Length)
            {
                sb.Append(s[i]);
                continue;
            }

            var e = s[++i];
            sb.Append(e switch
            {
                '\\' => '\\',
                'n' => '\n',
                _ when help => throw new FormatException($"{where}: '\\{e}' is not an escape in HELP"),
                _ => e,
            });
        }

        return sb.ToString();
    }

    /// <summary>The one sample of <paramref name="name"/> whose labels include <paramref name="labels"/> (name=value pairs); 0 when there is none.</summary>
    public double Value(string name, params (string Name, string Value)[] labels)
    {
        var matching = _samples.Where(s => s.Name == name && labels.All(l => s.Label(l.Name) == l.Value)).ToList();
        return matching.Count switch
        {
            0 => 0,
            1 => matching[0].Value,
            _ => throw new InvalidOperationException($"{matching.Count} series of {name} match {string.Join(",", labels)}"),
        };
    }

    /// <summary>The sum over every series of <paramref name="name"/>.</summary>
    public double Sum(string name) => _samples.Where(s => s.Name == name).Sum(s => s.Value);
}

/// <summary>
/// <c>promtool check metrics</c> — Prometheus's own parser and linter of the exposition format (names, units, _total,
/// HELP) — from <c>artifacts/tools/promtool</c> (<c>./build.sh test</c> unpacks it from Debian's prometheus package) or PATH.
/// </summary>
public static class Promtool
{
    /// <summary>The promtool binary, or null when neither place has it.</summary>
    public static string? Path
    {
        get
        {
            var local = System.IO.Path.Combine(TestPackages.RepositoryRoot, "artifacts", "tools", "promtool");
            if (File.Exists(local)) return local;
            return (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => System.IO.Path.Combine(d, "promtool")).FirstOrDefault(File.Exists);
        }
    }

    /// <summary>Runs <c>promtool check metrics</c> on <paramref name="exposition"/>: (exit code, what it printed).</summary>
    public static (int Code, string Output) CheckMetrics(string exposition)
    {
        var psi = new ProcessStartInfo(Path ?? throw new InvalidOperationException("promtool is not available"), "check metrics")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.StandardInput.Write(exposition);
        p.StandardInput.Close();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("promtool check metrics did not finish in 60 s");
        }

        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}
