namespace EdgeMl.Cli;

/// <summary><c>--name value</c> (repeatable), <c>--flag</c> and positionals; anything not asked for is a usage error.</summary>
public sealed class CliArgs
{
    private readonly Dictionary<string, List<string?>> _named = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public CliArgs(IEnumerable<string> args, IReadOnlySet<string> flags)
    {
        var list = args.ToList();
        for (var i = 0; i < list.Count; i++)
        {
            var a = list[i];
            if (!a.StartsWith("--", StringComparison.Ordinal) || a.Length == 2)
            {
                Positional.Add(a);
                continue;
            }

            var eq = a.IndexOf('=', StringComparison.Ordinal);
            var (name, value) = eq > 0 ? (a[2..eq], a[(eq + 1)..])
                : flags.Contains(a[2..]) || i + 1 >= list.Count || list[i + 1].StartsWith("--", StringComparison.Ordinal) ? (a[2..], null)
                : (a[2..], list[++i]);
            if (!_named.TryGetValue(name, out var values)) _named[name] = values = [];
            values.Add(value);
        }
    }

    public List<string> Positional { get; } = [];

    public bool Has(string name)
    {
        _used.Add(name);
        return _named.ContainsKey(name);
    }

    public string? Get(string name) => All(name) is { Count: > 0 } values ? values[^1] : null;

    public IReadOnlyList<string> All(string name)
    {
        _used.Add(name);
        if (!_named.TryGetValue(name, out var values)) return [];
        return values.Select(v => v ?? throw new UsageException($"--{name} needs a value")).ToList();
    }

    public void RejectUnknown(int positionals)
    {
        var unknown = _named.Keys.FirstOrDefault(k => !_used.Contains(k));
        if (unknown is not null) throw new UsageException($"unknown option --{unknown}");
        if (Positional.Count > positionals) throw new UsageException($"unexpected argument '{Positional[positionals]}'");
    }
}

public sealed class UsageException(string message) : Exception(message);

/// <summary>The hub said no (or could not be reached): one line for the user, exit 1.</summary>
public sealed class HubException(string message) : Exception(message);
