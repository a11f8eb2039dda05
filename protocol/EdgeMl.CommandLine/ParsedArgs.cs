using System.CommandLine;
using System.CommandLine.Parsing;

namespace EdgeMl.CommandLine;

/// <summary>
/// What a command was given, by option name (without <c>--</c>): the text as typed (<see cref="Get"/>, <see cref="All"/>),
/// the typed value the option's parser made of it (<see cref="Value{T}"/>), switches (<see cref="Has"/>) and the
/// command's arguments in order (<see cref="Positional"/>). Values were checked while parsing (<see cref="CliOptions"/>).
/// </summary>
public sealed class ParsedArgs
{
    private readonly ParseResult _result;

    /// <summary>Wraps a parse result without errors.</summary>
    public ParsedArgs(ParseResult result)
    {
        _result = result;
        Positional = result.CommandResult.Command.Arguments
            .Select(a => result.GetResult(a) is { } r ? r.Tokens.Select(t => t.Value) : [])
            .SelectMany(x => x).ToList();
    }

    /// <summary>The command's arguments, as typed, in order.</summary>
    public List<string> Positional { get; }

    /// <summary>The parse result itself (typed values of arguments and options).</summary>
    public ParseResult Result => _result;

    /// <summary>True when the switch <c>--name</c> is on, or the option <c>--name</c> was given.</summary>
    public bool Has(string name) => _result.GetResult("--" + name) switch
    {
        OptionResult { Option: Option<bool> b } => _result.GetValue(b),
        OptionResult r => !r.Implicit,
        _ => false,
    };

    /// <summary>The last value given to <c>--name</c>, as typed; null when not given.</summary>
    public string? Get(string name) => All(name) is { Count: > 0 } values ? values[^1] : null;

    /// <summary>Every value given to <c>--name</c>, as typed, in order.</summary>
    public IReadOnlyList<string> All(string name) =>
        _result.GetResult("--" + name) is OptionResult { Implicit: false } r ? r.Tokens.Select(t => t.Value).ToList() : [];

    /// <summary>Every option given (name without <c>--</c> → its last value as typed; <c>true</c> for a switch that is on).</summary>
    public IReadOnlyDictionary<string, string> GivenOptions()
    {
        var given = new Dictionary<string, string>(StringComparer.Ordinal);
        for (SymbolResult? r = _result.CommandResult; r is not null; r = r.Parent)
        {
            if (r is not CommandResult c) continue;
            foreach (var o in c.Children.OfType<OptionResult>().Where(o => !o.Implicit))
            {
                given.TryAdd(o.Option.Name.TrimStart('-'), o.Tokens.Count > 0 ? o.Tokens[^1].Value : "true");
            }
        }

        return given;
    }

    /// <summary>The value the option's parser made (its default when not given).</summary>
    public T? Value<T>(string name) => _result.GetValue<T>("--" + name);

    /// <summary>A whole-number option (checked while parsing); null when not given.</summary>
    public long? GetLong(string name) => Get(name) is null ? null : _result.GetValue<long>("--" + name);

    /// <summary>
    /// Configuration keys given on the command line (<c>--Agent:Inference:Threads=2</c> or <c>--Agent:Inference:Threads 2</c>)
    /// of a command that accepts them (<see cref="Command.TreatUnmatchedTokensAsErrors"/> off); anything else left over
    /// is a usage error.
    /// </summary>
    /// <exception cref="UsageException">A token that is neither an option of the command nor <c>--Section:Key=value</c>.</exception>
    public IEnumerable<KeyValuePair<string, string?>> ConfigOverrides()
    {
        var tokens = _result.UnmatchedTokens;
        var list = new List<KeyValuePair<string, string?>>();
        for (var i = 0; i < tokens.Count; i++)
        {
            var t = tokens[i];
            if (!t.StartsWith("--", StringComparison.Ordinal) || !t.Contains(':', StringComparison.Ordinal))
            {
                throw new UsageException($"unrecognized command or argument '{t}'");
            }

            var eq = t.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0) list.Add(new(t[2..eq], t[(eq + 1)..]));
            else if (i + 1 < tokens.Count && !tokens[i + 1].StartsWith("--", StringComparison.Ordinal)) list.Add(new(t[2..], tokens[++i]));
            else throw new UsageException($"{t} needs a value ({t}=VALUE)");
        }

        return list;
    }
}
