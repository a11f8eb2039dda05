using System.Globalization;

namespace EdgeMl.Agent.Cli;

/// <summary>A small, AOT-safe parser for <c>--name value</c>, <c>--flag</c> and positional arguments.</summary>
public sealed class Arguments
{
    private readonly Dictionary<string, string?> _named = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public Arguments(IEnumerable<string> args, IReadOnlySet<string> flags)
    {
        var list = args.ToList();
        for (var i = 0; i < list.Count; i++)
        {
            var a = list[i];
            if (a.StartsWith("--", StringComparison.Ordinal) && a.Length > 2)
            {
                var eq = a.IndexOf('=', StringComparison.Ordinal);
                if (eq > 0)
                {
                    _named[a[2..eq]] = a[(eq + 1)..];
                }
                else if (flags.Contains(a[2..]) || i + 1 >= list.Count || list[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    _named[a[2..]] = null;
                }
                else
                {
                    _named[a[2..]] = list[++i];
                }
            }
            else
            {
                Positional.Add(a);
            }
        }
    }

    public List<string> Positional { get; } = [];

    public bool Has(string name)
    {
        _used.Add(name);
        return _named.ContainsKey(name);
    }

    public string? Get(string name)
    {
        _used.Add(name);
        if (!_named.TryGetValue(name, out var v)) return null;
        return v ?? throw new UsageException($"--{name} needs a value");
    }

    public long? GetLong(string name)
    {
        var s = Get(name);
        if (s is null) return null;
        return long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : throw new UsageException($"--{name}: '{s}' is not a whole number");
    }

    /// <summary>Named arguments that look like configuration keys (<c>--Agent:Inference:Threads=2</c>).</summary>
    public IEnumerable<KeyValuePair<string, string?>> ConfigOverrides() =>
        _named.Where(kv => kv.Key.Contains(':', StringComparison.Ordinal)).Select(kv => { _used.Add(kv.Key); return kv; });

    /// <summary>Fails on any named argument no command asked for (a typo must not be silently ignored).</summary>
    public void RejectUnknown()
    {
        var unknown = _named.Keys.Where(k => !_used.Contains(k)).ToList();
        if (unknown.Count > 0)
        {
            throw new UsageException($"unknown option{(unknown.Count > 1 ? "s" : "")}: {string.Join(", ", unknown.Select(u => "--" + u))}");
        }
    }
}

public sealed class UsageException(string message) : Exception(message);
