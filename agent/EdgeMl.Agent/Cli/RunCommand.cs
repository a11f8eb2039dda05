using EdgeMl.Agent.Configuration;
using EdgeMl.Agent.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

using EdgeMl.CommandLine;

namespace EdgeMl.Agent.Cli;

/// <summary>
/// <c>run --config FILE</c>: the service, hosted (systemd-aware: <see cref="SystemdWatchdog"/>), logging to stderr
/// (<c>--log-format text|json</c>, <see cref="AgentLogging"/>).
/// <c>run --model PKG --sensor SPEC</c>: the same pipeline without a config file, predictions as JSON lines on stdout.
/// </summary>
public static class RunCommand
{
    public static async Task<int> RunAsync(ParsedArgs args, CancellationToken ct)
    {
        var configFile = args.Get("config");
        var settings = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        Map(args, settings, "model", "Agent:Model");
        Map(args, settings, "sensor", "Agent:Sensor");
        Map(args, settings, "seed", "Agent:Seed");
        Map(args, settings, "count", "Agent:Pipeline:Count");
        Map(args, settings, "threads", "Agent:Inference:Threads");
        Map(args, settings, "provider", "Agent:Inference:Provider");
        Map(args, settings, "onnxruntime", "Agent:Inference:OnnxRuntimeLibrary");
        Map(args, settings, "results", "Agent:ResultLog");
        Map(args, settings, "format", "Agent:ResultFormat");
        Map(args, settings, "data", "Agent:DataDirectory");
        Map(args, settings, "hub", "Agent:Hub:Broker");
        Map(args, settings, "device", "Agent:Hub:DeviceId");
        if (args.Get("health-every") is not null) settings["Agent:HealthIntervalSeconds"] = ((int)Math.Ceiling(args.Value<TimeSpan>("health-every").TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (args.Has("fast")) settings["Agent:Pipeline:Realtime"] = "false";
        foreach (var kv in args.ConfigOverrides()) settings[kv.Key] = kv.Value;
        var quiet = args.Has("quiet");
        var logFormat = args.Get("log-format") ?? "text";

        if (configFile is null && !settings.ContainsKey("Agent:Model"))
        {
            throw new UsageException("run needs --config FILE, or --model PKG --sensor SPEC");
        }

        if (configFile is not null && !File.Exists(configFile))
        {
            throw new ConfigurationException("--config", $"'{configFile}' does not exist");
        }

        if (configFile is null)
        {
            // Quick mode: no host, so the first prediction comes as soon as the model is loaded.
            settings.TryAdd("Agent:HealthIntervalSeconds", "0");
            var config = new ConfigurationBuilder().AddEnvironmentVariables("EDGEML_").AddInMemoryCollection(settings).Build();
            var options = AgentOptionsLoader.Load(config);
            using var loggers = LoggerFactory.Create(b => b.AddAgentConsole(logFormat, quiet));
            await AgentHost.RunAsync(options, loggers, ct).ConfigureAwait(false);
            return 0;
        }

        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings
        {
            ContentRootPath = Path.GetDirectoryName(Path.GetFullPath(configFile)),
        });
        builder.Configuration
            .AddJsonFile(Path.GetFullPath(configFile), optional: false, reloadOnChange: false)
            .AddEnvironmentVariables("EDGEML_")
            .AddInMemoryCollection(settings);
        var agentOptions = AgentOptionsLoader.Load(builder.Configuration);
        // Paths in a config file are relative to that file (a systemd unit's working directory is often /).
        var configDir = Path.GetDirectoryName(Path.GetFullPath(configFile))!;
        agentOptions.Model = Path.GetFullPath(agentOptions.Model, configDir);
        if (agentOptions.ResultLog != "-") agentOptions.ResultLog = Path.GetFullPath(agentOptions.ResultLog, configDir);
        if (agentOptions.DataDirectory.Length > 0) agentOptions.DataDirectory = Path.GetFullPath(agentOptions.DataDirectory, configDir);
        builder.Logging.AddAgentConsole(logFormat, quiet);
        // systemd (Type=notify): READY=1 once the pipeline runs, WATCHDOG=1 only while it makes progress. Not AddSystemd():
        // its lifetime says READY as soon as the host starts, before the model is loaded or the sensor has answered.
        builder.Services.AddSingleton<Pipeline.PipelineProgress>();
        builder.Services.AddHostedService<SystemdWatchdog>();
        var outcome = new ServiceOutcome();
        builder.Services.AddSingleton(agentOptions);
        builder.Services.AddSingleton(outcome);
        builder.Services.AddHostedService<AgentService>();
        using (var host = builder.Build())
        {
            await host.RunAsync(ct).ConfigureAwait(false);
        }

        if (outcome.Failure is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(outcome.Failure);
        }

        return 0;
    }

    private static void Map(ParsedArgs args, Dictionary<string, string?> settings, string option, string key)
    {
        var v = args.Get(option);
        if (v is not null) settings[key] = v;
    }
}
