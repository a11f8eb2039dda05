using EdgeMl.Agent.Sensors;
using Microsoft.Extensions.Configuration;

namespace EdgeMl.Agent.Configuration;

/// <summary>
/// Binds <see cref="AgentOptions"/> from configuration (source-generated binder: AOT-safe) and validates
/// it. Unknown keys, values of the wrong type and out-of-range values are errors that name the key.
/// </summary>
public static class AgentOptionsLoader
{
    public static AgentOptions Load(IConfiguration configuration)
    {
        var section = configuration.GetSection(AgentOptions.Section);
        var options = new AgentOptions();
        try
        {
            section.Bind(options, b => b.ErrorOnUnknownConfiguration = true);
        }
        catch (InvalidOperationException e)
        {
            // The binder's own text names its option, not the user's key: say which keys are not settings, and where.
            var unknown = System.Text.RegularExpressions.Regex.Match(e.Message, @"instance of (?:[\w]+\.)*(?<type>\w+): (?<keys>.+)$");
            if (unknown.Success)
            {
                var type = unknown.Groups["type"].Value;
                var where = type is "AgentOptions" ? AgentOptions.Section
                    : $"{AgentOptions.Section}:{type.Replace("Options", "", StringComparison.Ordinal).Replace("Settings", "", StringComparison.Ordinal)}";
                throw new ConfigurationException(where, $"{unknown.Groups["keys"].Value.Trim().TrimEnd('.')} is not a setting here (README: configuration lists them)");
            }

            throw new ConfigurationException(KeyFrom(e.Message), e.Message);
        }

        Sync.DeviceIdentity.Apply(options);
        Validate(options);
        return options;
    }

    public static void Validate(AgentOptions o)
    {
        const string p = AgentOptions.Section;
        if (string.IsNullOrWhiteSpace(o.Model)) throw new ConfigurationException($"{p}:Model", "a model package (.edgepkg) is required");
        if (string.IsNullOrWhiteSpace(o.Sensor)) throw new ConfigurationException($"{p}:Sensor", "a sensor is required, e.g. sim:vibration");
        _ = SensorSpec.Parse(o.Sensor, $"{p}:Sensor");
        if (o.ResultFormat is not ("json" or "text")) throw new ConfigurationException($"{p}:ResultFormat", $"'{o.ResultFormat}' is not one of json, text");
        if (o.ResultFormat == "text" && o.ResultLog != "-") throw new ConfigurationException($"{p}:ResultFormat", "text output goes to the terminal; a ResultLog file is always JSON lines");
        if (o.HealthIntervalSeconds < 0) throw new ConfigurationException($"{p}:HealthIntervalSeconds", "must be >= 0");

        if (o.Outbox.MaxBytes < 1024) throw new ConfigurationException($"{p}:Outbox:MaxBytes", $"{o.Outbox.MaxBytes} is below the minimum of 1024 bytes");
        if (o.Outbox.TtlHours < 0) throw new ConfigurationException($"{p}:Outbox:TtlHours", "must be >= 0 (0: never expire)");

        var hub = o.Hub;
        if (hub.Broker.Length > 0)
        {
            if (!Uri.TryCreate(hub.Broker, UriKind.Absolute, out var broker) || broker.Scheme is not ("mqtt" or "mqtts") || broker.Host.Length == 0)
                throw new ConfigurationException($"{p}:Hub:Broker", $"'{hub.Broker}' is not mqtt://host[:port] or mqtts://host[:port]");
            foreach (var (key, file) in new[] { ("CaCertificate", hub.CaCertificate), ("ClientCertificate", hub.ClientCertificate), ("ClientKey", hub.ClientKey) })
            {
                if (file is not null && !File.Exists(file)) throw new ConfigurationException($"{p}:Hub:{key}", $"'{file}' does not exist");
                if (file is not null && broker.Scheme != "mqtts") throw new ConfigurationException($"{p}:Hub:{key}", "certificates are for TLS: use an mqtts:// broker");
            }

            if ((hub.ClientCertificate is null) != (hub.ClientKey is null))
                throw new ConfigurationException($"{p}:Hub:ClientKey", "a client certificate needs its key and a key its certificate: set both ClientCertificate and ClientKey");
            if (hub.DeviceId.Length == 0 || hub.DeviceId.IndexOfAny(['/', '+', '#', ' ']) >= 0)
                throw new ConfigurationException($"{p}:Hub:DeviceId", $"'{hub.DeviceId}' is not a device id (non-empty, no '/', '+', '#' or spaces)");
            if (string.IsNullOrWhiteSpace(o.DataDirectory))
                throw new ConfigurationException($"{p}:DataDirectory", "the uplink sends what the outbox stored: set a data directory");
            if (hub.BackfillRecordsPerSecond < 0) throw new ConfigurationException($"{p}:Hub:BackfillRecordsPerSecond", "must be >= 0 (0: no limit)");
            if (hub.BatchSize is < 1 or > 10_000) throw new ConfigurationException($"{p}:Hub:BatchSize", $"{hub.BatchSize} is not between 1 and 10000");
            if (hub.ReconnectMinMs < 1 || hub.ReconnectMaxMs < hub.ReconnectMinMs)
                throw new ConfigurationException($"{p}:Hub:ReconnectMaxMs", "ReconnectMinMs must be >= 1 and ReconnectMaxMs >= ReconnectMinMs");
        }

        if (o.Drift.WindowSeconds is < 1 or > 86_400) throw new ConfigurationException($"{p}:Drift:WindowSeconds", $"{o.Drift.WindowSeconds} is not between 1 and 86400");
        if (o.Drift.K is < 8 or > 4096) throw new ConfigurationException($"{p}:Drift:K", $"{o.Drift.K} is not between 8 and 4096");

        if (o.Metrics.Port is < 0 or > 65535) throw new ConfigurationException($"{p}:Metrics:Port", $"{o.Metrics.Port} is not a port (1..65535; 0: no metrics endpoint)");
        if (o.Metrics.Address is not ("*" or "::" or "[::]")
            && !(System.Net.IPAddress.TryParse(o.Metrics.Address, out var metricsIp) && metricsIp.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork))
            throw new ConfigurationException($"{p}:Metrics:Address", $"'{o.Metrics.Address}' is not an IPv4 address, or 0.0.0.0, :: or * for every interface");

        var inf = o.Inference;
        if (inf.Provider.ToLowerInvariant() is not ("cpu" or "cuda" or "tensorrt"))
            throw new ConfigurationException($"{p}:Inference:Provider", $"'{inf.Provider}' is not one of cpu, cuda, tensorrt");
        if (inf.Threads is < 0 or > 256) throw new ConfigurationException($"{p}:Inference:Threads", $"{inf.Threads} is not between 0 (automatic) and 256");
        if (inf.WarmupRuns is < 0 or > 1000) throw new ConfigurationException($"{p}:Inference:WarmupRuns", $"{inf.WarmupRuns} is not between 0 and 1000");
        if (inf.DeviceId < 0) throw new ConfigurationException($"{p}:Inference:DeviceId", "must be >= 0");

        var pl = o.Pipeline;
        if (pl.WindowQueue is < 1 or > 1024) throw new ConfigurationException($"{p}:Pipeline:WindowQueue", $"{pl.WindowQueue} is not between 1 and 1024");
        if (pl.RetryInitialMs < 1) throw new ConfigurationException($"{p}:Pipeline:RetryInitialMs", "must be >= 1");
        if (pl.RetryMaxMs < pl.RetryInitialMs) throw new ConfigurationException($"{p}:Pipeline:RetryMaxMs", $"must be >= RetryInitialMs ({pl.RetryInitialMs})");
        if (pl.Count < 0) throw new ConfigurationException($"{p}:Pipeline:Count", "must be >= 0");

        if (o.Gpio.Driver.ToLowerInvariant() is not ("auto" or "libgpiod" or "sysfs" or "simulated"))
            throw new ConfigurationException($"{p}:Gpio:Driver", $"'{o.Gpio.Driver}' is not one of auto, libgpiod, sysfs, simulated");

        var pins = new HashSet<int>();
        for (var i = 0; i < o.Actions.Count; i++)
        {
            var a = o.Actions[i];
            var at = $"{p}:Actions:{i}";
            if (a.Pin is < -1 or > 1023) throw new ConfigurationException($"{at}:Pin", $"{a.Pin} is not a GPIO pin number (0..1023; -1: no pin)");
            if (a.Pin < 0 && !a.Alert) throw new ConfigurationException(at, "the rule has no Pin and Alert is false: it would do nothing");
            if (a.Pin >= 0 && !pins.Add(a.Pin)) throw new ConfigurationException($"{at}:Pin", $"GPIO {a.Pin} is driven by another action already");
            if ((a.Label is null) == (a.Above is null)) throw new ConfigurationException(at, "set exactly one of Label (a class) or Above (a score threshold)");
            if (a.MinScore is < 0 or > 1) throw new ConfigurationException($"{at}:MinScore", $"{a.MinScore} is not a probability (0..1)");
            if (a.After < 1) throw new ConfigurationException($"{at}:After", "must be >= 1");
            if (a.HoldMs < 0) throw new ConfigurationException($"{at}:HoldMs", "must be >= 0");
        }
    }

    /// <summary>The binder's messages quote the key ("… at 'Agent:Inference:Threads' …"); pull it out for the exception's Key.</summary>
    private static string KeyFrom(string message)
    {
        var at = message.IndexOf(" at '", StringComparison.Ordinal);
        var start = at >= 0 ? at + 4 : message.IndexOf('\'', StringComparison.Ordinal);
        var end = start >= 0 ? message.IndexOf('\'', start + 1) : -1;
        return end > start ? message[(start + 1)..end] : AgentOptions.Section;
    }
}
