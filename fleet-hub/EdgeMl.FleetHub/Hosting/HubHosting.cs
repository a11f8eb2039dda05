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
                return $"--config: {file}: {e.Message}";
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
