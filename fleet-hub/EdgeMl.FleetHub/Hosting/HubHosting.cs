using System.Reflection;
using System.Text.Json;

namespace EdgeMl.FleetHub.Hosting;

/// <summary>
/// How the hub runs as a service: <c>--config FILE</c> (JSON with comments, e.g. the package's /etc/edgeml/hub.json;
/// the command line still wins over it), <c>--log-format text|json</c> (json: one object a line with the event id,
/// Microsoft.Extensions.Logging's JSON console formatter), and systemd (<c>Type=notify</c>: READY=1 once the API and the
/// broker listen, STOPPING=1, journald's priority prefixes; WATCHDOG=1 from <see cref="HubWatchdog"/>).
/// </summary>
public static class HubHosting
{
    /// <summary>The hub's version (Directory.Build.props, plus the commit): what <c>edgeml-hub --version</c> prints.</summary>
    public static string Version =>
        typeof(HubHosting).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    /// <summary>Keys of ASP.NET Core's host and Kestrel a hub configuration file may hold besides <see cref="HubSettings"/>'s.</summary>
    private static readonly string[] HostKeys =
    [
        "Urls", "Kestrel", "Logging", "AllowedHosts", "log-format", "https_ports", "http_ports", "environment", "shutdownTimeoutSeconds",
    ];

    /// <summary>Whether a top-level key of a configuration file is one the hub reads (case-insensitive, as configuration is).</summary>
    public static bool IsSetting(string key) =>
        HostKeys.Contains(key, StringComparer.OrdinalIgnoreCase)
        || typeof(HubSettings).GetProperties().Any(p => p.CanWrite && string.Equals(p.Name, key, StringComparison.OrdinalIgnoreCase));

    /// <summary>Host keys the command line may also give (WebApplication reads them from it), besides <see cref="HostKeys"/>.</summary>
    private static readonly string[] CommandLineKeys = ["config", "contentRoot", "applicationName"];

    /// <summary>
    /// Reads the command line as the hub takes it: <c>--Name value</c> or <c>--Name=value</c> settings, and the flags
    /// <c>--help</c> (<c>-h</c>, <c>-?</c>) and <c>--version</c>, which take no value. Returns what is wrong in one line
    /// naming the word (exit 2: usage), or null; <paramref name="flag"/> is the first of <c>help</c> and <c>version</c>
    /// given (null: run the hub). Wrong is: a key that is no setting (a typo such as <c>--MqttPrt</c> would otherwise be
    /// ignored and the default used), a word that is not an option, a key without its value, a flag with a value, and a
    /// value its setting can never take (<see cref="HubSettings.ValueProblem"/>: not of its type, out of its range, not one
    /// of its words, an empty file or directory name). The word after <c>--Name</c> is always its value, even when it
    /// looks like a flag (<c>--Data -h</c> is the directory "-h"), as the configuration's command-line reader takes it.
    /// The whole line is checked before a flag is acted on, so <c>--help</c> and <c>--version</c> ignore the other
    /// settings only when they are well-formed. Keys are matched case-insensitively, as configuration does.
    /// </summary>
    public static string? CommandLineProblem(string[] args, out string? flag)
    {
        flag = null;
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            var word = eq < 0 ? arg : arg[..eq];
            if (word is "--help" or "-h" or "-?" or "--version")
            {
                if (eq >= 0) return $"'{word}' takes no value ('{arg}')";
                flag ??= word == "--version" ? "version" : "help";
                continue;
            }

            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
            {
                return $"'{arg}' is not an option: settings are given as --Name value or --Name=value (edgeml-hub --help lists them)";
            }

            var key = word[2..];
            var top = key.Split(':')[0];
            if (!IsSetting(top) && !CommandLineKeys.Contains(top, StringComparer.OrdinalIgnoreCase))
            {
                return $"'--{key}' is not a setting (edgeml-hub --help lists them; docs/fleet.md describes each)";
            }

            if (eq < 0 && ++i >= args.Length)
            {
                return $"'--{key}' needs a value";
            }

            if (HubSettings.ValueProblem(key, eq < 0 ? args[i] : arg[(eq + 1)..]) is { } bad) return bad;
        }

        return null;
    }

    /// <summary>The text of <c>edgeml-hub --help</c>: how settings are given, and each setting with its type and default (from <see cref="HubSettings"/>).</summary>
    public static string Help()
    {
        var defaults = new HubSettings();
        var text = new System.Text.StringBuilder();
        text.AppendLine("Usage: edgeml-hub [--Name value | --Name=value]...");
        text.AppendLine();
        text.AppendLine("The fleet hub: REST API, dashboard, MQTT broker (embedded, or --Broker for an external one), registry, rollouts.");
        text.AppendLine("Settings come from the command line and from --config FILE (JSON; the command line wins over it).");
        text.AppendLine("docs/fleet.md describes each one.");
        text.AppendLine();
        text.AppendLine("Options:");
        text.AppendLine("  --config FILE           a JSON file of settings (e.g. /etc/edgeml/hub.json)");
        text.AppendLine("  --log-format text|json  json: one object a line (journald, log shippers)");
        text.AppendLine("  --Urls URL[;URL]        where the API and dashboard listen (default http://localhost:5000)");
        text.AppendLine("  --version               the hub's version, and exit");
        text.AppendLine("  --help, -h              this text, and exit");
        text.AppendLine();
        text.AppendLine("--help and --version ignore the other settings, which must still be well-formed; the first of them given wins.");
        text.AppendLine("Exit codes: 0 stopped cleanly; 1 a setting that does not fit this machine or the others (a missing file, a");
        text.AppendLine("port in use), or a failure; 2 usage: a name that is no setting, a value missing or of the wrong kind.");
        text.AppendLine();
        text.AppendLine("Settings (name, type, default):");
        foreach (var p in typeof(HubSettings).GetProperties().Where(p => p.CanWrite).OrderBy(p => p.Name, StringComparer.Ordinal))
        {
            var value = p.GetValue(defaults) switch
            {
                null => "(none)",
                string s when s.Length == 0 => "\"\"",
                IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
                System.Collections.IEnumerable e and not string => $"[{string.Join(", ", e.Cast<object>())}]",
                var v => v.ToString(),
            };
            var type = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
            text.AppendLine($"  --{p.Name,-26} {TypeName(type),-8} {value}");
        }

        return text.ToString().TrimEnd();

        static string TypeName(Type t) =>
            t == typeof(int) || t == typeof(long) ? "integer" : t == typeof(double) ? "number" : t == typeof(bool) ? "bool" : t == typeof(string) ? "text" : t.IsArray || t.IsGenericType ? "list" : t.Name.ToLowerInvariant();
    }

    /// <summary>Applies <c>--config</c>, <c>--log-format</c> and systemd to <paramref name="builder"/>; returns what is wrong (one line naming the option) or null.</summary>
    public static string? UseHubHosting(this WebApplicationBuilder builder, string[] args)
    {
        if (builder.Configuration["config"] is { Length: > 0 } file)
        {
            if (Directory.Exists(file)) return $"--config: '{file}' is a directory, not a JSON file (e.g. /etc/edgeml/hub.json)";
            if (!File.Exists(file)) return $"--config: '{file}' does not exist";
            try
            {
                builder.Configuration.AddJsonFile(Path.GetFullPath(file), optional: false, reloadOnChange: false);
                // The file alone, to name a key that is no setting (a typo such as "MqttPrt" would otherwise be ignored silently).
                var unknown = new ConfigurationBuilder().AddJsonFile(Path.GetFullPath(file), optional: false, reloadOnChange: false).Build()
                    .GetChildren().Select(c => c.Key).Where(k => !IsSetting(k)).ToList();
                if (unknown.Count > 0)
                {
                    return $"--config: {file}: {string.Join(", ", unknown.Select(k => $"'{k}'"))} {(unknown.Count == 1 ? "is" : "are")} not a setting here (docs/fleet.md lists them)";
                }
            }
            catch (Exception e) when (e is InvalidDataException or FormatException or JsonException or IOException or UnauthorizedAccessException)
            {
                // The provider's "Failed to load configuration from file" alone does not say why: the parser's reason follows.
                var why = e.InnerException is { } inner ? $"{e.Message.TrimEnd('.')}: {inner.Message}" : e.Message;
                return $"--config: {file}: {why}";
            }

            builder.Configuration.AddCommandLine(args); // the command line wins over the file
        }

        switch (builder.Configuration["log-format"] ?? "text")
        {
            case "json":
                builder.Logging.ClearProviders();
                builder.Logging.AddJsonConsole(o =>
                {
                    o.UseUtcTimestamp = true;
                    o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
                    o.JsonWriterOptions = new JsonWriterOptions { Indented = false };
                });
                break;
            case "text":
                break;
            case var other:
                return $"--log-format '{other}' is not one of text, json";
        }

        builder.Services.AddSystemd();
        builder.Services.AddHostedService<HubWatchdog>();
        return null;
    }
}
