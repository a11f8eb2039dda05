using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace EdgeMl.Agent.Cli;

/// <summary>
/// The agent's log lines, all on stderr (stdout carries predictions): <c>text</c> (one line each, with the time; under
/// systemd journald's <c>&lt;N&gt;</c> priority prefix and no time, as journald adds its own) or <c>json</c> (one JSON
/// object a line: Timestamp, EventId, LogLevel, Category, Message, State — Microsoft.Extensions.Logging's JSON console
/// formatter, which writes with Utf8JsonWriter and no reflection, so it stays AOT-clean).
/// </summary>
internal static class AgentLogging
{
    /// <summary>The values <c>--log-format</c> takes.</summary>
    public static readonly string[] Formats = ["text", "json"];

    /// <summary>Adds the console logger in <paramref name="format"/> (<see cref="Formats"/>) at Information, or Warning when quiet.</summary>
    public static ILoggingBuilder AddAgentConsole(this ILoggingBuilder builder, string format, bool quiet)
    {
        var min = quiet ? LogLevel.Warning : LogLevel.Information;
        if (format == "json")
        {
            builder.AddJsonConsole(o =>
            {
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
                o.JsonWriterOptions = new JsonWriterOptions { Indented = false };
            });
        }
        else if (SystemdHelpers.IsSystemdService())
        {
            builder.AddSystemdConsole();
        }
        else
        {
            builder.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
        }

        builder.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        return builder.SetMinimumLevel(min).AddFilter((_, _, level) => level >= min);
    }
}
