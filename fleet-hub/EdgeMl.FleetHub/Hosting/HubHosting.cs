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

    /// <summary>Applies <c>--config</c>, <c>--log-format</c> and systemd to <paramref name="builder"/>; returns what is wrong (one line naming the option) or null.</summary>
    public static string? UseHubHosting(this WebApplicationBuilder builder, string[] args)
    {
        if (builder.Configuration["config"] is { Length: > 0 } file)
        {
            if (!File.Exists(file)) return $"--config: '{file}' does not exist";
            try
            {
                builder.Configuration.AddJsonFile(Path.GetFullPath(file), optional: false, reloadOnChange: false);
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
