namespace EdgeMl.FleetHub;

/// <summary>
/// Command line (or <c>EDGEML_HUB_*</c>-free plain configuration): <c>edgeml-hub --Data DIR --MqttPort 1883
/// [--MqttAddress 0.0.0.0] [--Broker mqtt://host:port] --urls http://127.0.0.1:8080</c>.
/// </summary>
public sealed class HubSettings
{
    /// <summary>Largest request body of any call but a model push (<c>POST /api/models</c>): 1 MiB; over it, 413.</summary>
    public const long MaxJsonBodyBytes = 1 << 20;

    public string Data { get; set; } = "hub-data";
    public string MqttAddress { get; set; } = "127.0.0.1";
    /// <summary>Plain MQTT port of the embedded broker; 0: none (TLS only).</summary>
    public int MqttPort { get; set; } = 1883;
    /// <summary>MQTT over TLS port of the embedded broker (with <see cref="MqttTlsCertificate"/>); 0: none.</summary>
    public int MqttTlsPort { get; set; }
    /// <summary>The broker's certificate chain (PEM) for TLS.</summary>
    public string MqttTlsCertificate { get; set; } = "";
    /// <summary>Its private key (PEM).</summary>
    public string MqttTlsKey { get; set; } = "";
    /// <summary><c>mqtt://host:port</c> of an external broker; empty: the embedded broker.</summary>
    public string Broker { get; set; } = "";
    /// <summary>With an external broker: the user name the hub logs in with (empty: none).</summary>
    public string BrokerUser { get; set; } = "";
    /// <summary>With an external broker: its password.</summary>
    public string BrokerPassword { get; set; } = "";
    /// <summary>
    /// With an external Mosquitto: devices' identities follow the hub through its dynamic-security plugin (enrollment
    /// creates the device's login and role, revocation deletes them); <see cref="BrokerUser"/> must be the plugin's admin.
    /// </summary>
    public bool BrokerDynsec { get; set; }
    /// <summary>With <c>mqtts://</c>: PEM file of the CA(s) the external broker's certificate must chain to (empty: the system's trust store).</summary>
    public string BrokerCa { get; set; } = "";
    /// <summary>
    /// Largest publish the embedded broker accepts from a device (bytes; default 2 MiB: a drift report of many features
    /// plus its envelope). A bigger one is refused and the connection closed. MQTTnet 5 has no limit on the packet
    /// itself, so the bytes are received before they are refused; put a TCP proxy or an external broker with
    /// <c>max_packet_size</c> in front where that matters.
    /// </summary>
    public int MaxPacketBytes { get; set; } = 2 * 1024 * 1024;
    /// <summary>
    /// With an external broker: the MQTT 5 shared-subscription group hub replicas split device batches in;
    /// empty (default): plain subscriptions, which Mosquitto keeps across its own restart.
    /// </summary>
    public string SharedGroup { get; set; } = "";
    /// <summary>
    /// The store: empty (default) for the embedded LiteDB store in <see cref="Data"/>; a PostgreSQL connection string
    /// (<c>Host=…;Database=…;Username=…;Password=…</c>, Npgsql's format) for the store several hub replicas share.
    /// </summary>
    public string Store { get; set; } = "";
    /// <summary>
    /// Records (telemetry, health, drift …) are removed this many days after the hub received them; 0: kept for ever. The
    /// PostgreSQL store drops whole day partitions by the records' own time instead (docs/scale.md).
    /// </summary>
    public double RetentionDays { get; set; } = 30;
    /// <summary>
    /// How long a starting hub waits for a PostgreSQL <see cref="Store"/> that cannot be reached yet (seconds, default 60;
    /// 0: not at all): it tries again with a growing pause (1 s doubling to 10 s) and says so on stderr each time, then
    /// gives up with exit 1. Only what may pass is waited for (no answer, a refused or cut connection, a server starting up
    /// or out of connections, as Npgsql's <c>IsTransient</c> says); a wrong password or database exits at once.
    /// </summary>
    public double StoreWaitSeconds { get; set; } = 60;
    /// <summary>How often retention runs (minutes, default 60).</summary>
    public double RetentionIntervalMinutes { get; set; } = 60;
    /// <summary>This replica's client id at the external broker (persistent session).</summary>
    public string ClientId { get; set; } = "edgeml-hub-1";
    /// <summary>An operator API token to accept (besides the generated <c>operator.token</c>); empty: none.</summary>
    public string OperatorToken { get; set; } = "";
    /// <summary>Public keys (PEM files or directories of *.pub) a pushed model must be signed with.</summary>
    public List<string> TrustedKeys { get; set; } = [];
    private List<string>? _pems;

    /// <summary>What is wrong with the settings as given (one sentence naming the option), or null: checked before the hub starts.</summary>
    public string? Problem(IConfiguration configuration)
    {
        // A setting that takes one value given as an object ("Data": {"x": 1}, --Data:sub x) would be ignored and the
        // default used: refused, naming it.
        foreach (var p in typeof(HubSettings).GetProperties().Where(p => p.CanWrite && (p.PropertyType.IsPrimitive || p.PropertyType == typeof(string))))
        {
            if (configuration.GetSection(p.Name).GetChildren().Any()) return $"--{p.Name} takes one value, not a section ({p.Name}:…)";
        }

        if (configuration["TrustedKeys"] is { Length: > 0 } single)
        {
            return $"--TrustedKeys is a list: give it as --TrustedKeys:0 {single} (and :1, :2 … for more)";
        }

        try
        {
            SigningKeyPems();
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            return $"--TrustedKeys: {e.Message}";
        }

        if (BrokerDynsec && (Broker.Length == 0 || BrokerUser.Length == 0))
        {
            return "--BrokerDynsec needs --Broker mqtt://… and --BrokerUser/--BrokerPassword of the dynamic-security plugin's admin";
        }

        if (SharedGroup.Length > 0 && Broker.Length == 0)
        {
            // Ignored before: a replica meant to share the load served devices alone on its embedded broker.
            return "--SharedGroup needs --Broker mqtt://…: replicas split device traffic through an external broker's shared subscriptions (the embedded broker serves one hub)";
        }

        if (Broker.Length == 0 && MqttPort == 0 && MqttTlsPort == 0) return "--MqttPort 0 and no --MqttTlsPort: the embedded broker would listen nowhere";
        if (BrokerCa.Length > 0 && BrokerCaProblem(BrokerCa) is { } ca) return ca;
        if (MqttTlsPort > 0 && (!File.Exists(MqttTlsCertificate) || !File.Exists(MqttTlsKey)))
        {
            return $"--MqttTlsPort needs --MqttTlsCertificate and --MqttTlsKey files that exist ('{MqttTlsCertificate}', '{MqttTlsKey}')";
        }

        return null;
    }

    /// <summary>
    /// What is wrong with <c>--BrokerCa</c> <paramref name="path"/>, or null: it must be a readable file with at least one
    /// PEM certificate (a private key, garbage or a directory would only fail every TLS connect later, vaguely).
    /// </summary>
    public static string? BrokerCaProblem(string path)
    {
        if (Directory.Exists(path)) return $"--BrokerCa '{path}' is a directory, not a PEM file of CA certificates";
        if (!File.Exists(path)) return $"--BrokerCa '{path}' does not exist";
        try
        {
            var roots = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
            roots.ImportFromPemFile(path);
            return roots.Count > 0 ? null : $"--BrokerCa '{path}' has no PEM certificate (-----BEGIN CERTIFICATE-----) in it";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"--BrokerCa '{path}' cannot be read: {e.Message}";
        }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            return $"--BrokerCa '{path}' has a certificate that cannot be read: {e.Message}";
        }
    }

    /// <summary>
    /// What is wrong with the values of <paramref name="configuration"/> (command line and <c>--config</c> file merged),
    /// each checked by <see cref="ValueProblem"/>, or null: run before the settings are bound, so a value that is not of
    /// its setting's type is named with what the setting takes rather than in the binder's words.
    /// </summary>
    public static string? ValuesProblem(IConfiguration configuration)
    {
        foreach (var (key, value) in configuration.AsEnumerable())
        {
            // --config and the content root are the host's (checked on the command line; the host sets contentRoot itself).
            if (value is null || key.Equals("config", StringComparison.OrdinalIgnoreCase) || key.Equals("contentRoot", StringComparison.OrdinalIgnoreCase)) continue;
            if (ValueProblem(key, value) is { } problem) return problem;
        }

        return null;
    }

    /// <summary>
    /// What is wrong with <paramref name="value"/> as the value of the setting <paramref name="key"/> on its own (its type,
    /// its range, one of its words, an empty name), in one line naming the setting and what it takes; null when it is
    /// fine or the key is no setting with a rule (free text). Keys are matched case-insensitively, as configuration does;
    /// <c>TrustedKeys:N</c> is a list entry. The checks that need the machine (files that exist) or several settings
    /// together are <see cref="Problem"/>'s.
    /// </summary>
    public static string? ValueProblem(string key, string value)
    {
        var name = key.StartsWith("TrustedKeys:", StringComparison.OrdinalIgnoreCase) ? "TrustedKeys:N" : key;
        return ValueRules.TryGetValue(name, out var rule) ? rule(key, value) : null;
    }

    private static readonly Dictionary<string, Func<string, string, string?>> ValueRules = new(StringComparer.OrdinalIgnoreCase)
    {
        ["config"] = (k, v) => Named(k, v, "a JSON file (e.g. /etc/edgeml/hub.json); leave --config out for none"),
        ["contentRoot"] = (k, v) => Named(k, v, "a directory"),
        ["Data"] = (k, v) => Named(k, v, "a directory (default hub-data)"),
        ["TrustedKeys:N"] = (k, v) => Named(k, v, "a .pub file or a directory of them"),
        ["log-format"] = (k, v) => v is "text" or "json" ? null : $"--{k} '{Show(v)}' is not one of text, json",
        ["BrokerDynsec"] = (k, v) => bool.TryParse(v, out _) ? null : $"--{k} '{Show(v)}' is not one of true, false",
        ["MqttPort"] = (k, v) => Whole(k, v, 0, 65535, "a port (0-65535; 0: none, with --MqttTlsPort)"),
        ["MqttTlsPort"] = (k, v) => Whole(k, v, 0, 65535, "a port (0-65535; 0: none)"),
        ["MetricsPort"] = (k, v) => Whole(k, v, 0, 65535, "a port (0-65535; 0: none)"),
        ["MaxPacketBytes"] = (k, v) => Whole(k, v, 1, int.MaxValue, "a whole number of bytes from 1"),
        ["MaxPackageMb"] = (k, v) => Whole(k, v, 1, int.MaxValue, "a whole number of MB from 1"),
        ["RolloutTickMs"] = (k, v) => Whole(k, v, 50, 3_600_000, "a whole number of milliseconds from 50 to 3600000"),
        ["shutdownTimeoutSeconds"] = (k, v) => Whole(k, v, 0, 3600, "a whole number of seconds from 0 to 3600"),
        ["RetentionDays"] = (k, v) => Number(k, v, 0, 36_500, "a number of days from 0 (kept for ever) to 36500"),
        ["StoreWaitSeconds"] = (k, v) => Number(k, v, 0, 3600, "a number of seconds from 0 (do not wait) to 3600"),
        ["RetentionIntervalMinutes"] = (k, v) => Number(k, v, 1, 10_080, "a number of minutes from 1 to 10080 (a week)"),
        ["MetricsSampleSeconds"] = (k, v) => Number(k, v, 0, 86_400, "a number of seconds from 0 (every scrape) to 86400"),
        ["EnrollTokenHours"] = (k, v) => Number(k, v, 0.001, 8760, "a number of hours more than 0 and at most 8760 (a year)"),
        ["OfflineAfter"] = (k, v) => Protocol.Text.Durations.TryParse(v, out _, out var e) ? null : $"--{k}: {e}",
        ["MqttAddress"] = (k, v) => System.Net.IPAddress.TryParse(v, out _) ? null : $"--{k} '{Show(v)}' is not an IP address (e.g. 127.0.0.1, 0.0.0.0)",
        ["MetricsAddress"] = (k, v) => System.Net.IPAddress.TryParse(v, out _) ? null : $"--{k} '{Show(v)}' is not an IP address (e.g. 127.0.0.1, 0.0.0.0)",
        ["Broker"] = (k, v) => v.Length == 0 || (Uri.TryCreate(v, UriKind.Absolute, out var b) && b.Scheme is "mqtt" or "mqtts" && b.Host.Length > 0)
            ? null
            : $"--{k} '{Show(v)}' is not mqtt://HOST:PORT or mqtts://HOST:PORT (empty: the embedded broker)",
        ["Store"] = (k, v) => StoreProblem(k, v),
        ["SharedGroup"] = (k, v) => SharedGroupProblem(k, v),
    };

    private static string? Named(string key, string value, string what) =>
        string.IsNullOrWhiteSpace(value) ? $"--{key} is empty: it takes {what}" : null;

    private static string? Whole(string key, string value, int min, int max, string what) =>
        int.TryParse(value, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
            ? null
            : $"--{key} '{Show(value)}' is not {what}";

    private static string? Number(string key, string value, double min, double max, string what) =>
        double.TryParse(value, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var n) && double.IsFinite(n) && n >= min && n <= max
            ? null
            : $"--{key} '{Show(value)}' is not {what}";

    /// <summary>Longest <see cref="SharedGroup"/>: a share name is part of every topic filter the hub subscribes with.</summary>
    public const int MaxSharedGroupLength = 128;

    /// <summary>
    /// A share name (MQTT 5, 4.8.2): empty for none; else no '/', '+', '#' (a broker would read <c>$share/a/b/…</c> as
    /// another group and filter, and deliver nothing), no control character or blank, at most <see cref="MaxSharedGroupLength"/> characters.
    /// </summary>
    private static string? SharedGroupProblem(string key, string value)
    {
        const string what = "a share name (letters, digits, '-', '_', '.' …; no '/', '+', '#' or blanks; at most 128 characters; empty: none)";
        if (value.Length == 0) return null;
        if (value.Length > MaxSharedGroupLength || value.Any(c => c is '/' or '+' or '#' || char.IsControl(c) || char.IsWhiteSpace(c)))
        {
            return $"--{key} '{Show(value)}' is not {what}";
        }

        return null;
    }

    private static string? StoreProblem(string key, string value)
    {
        if (value.Length == 0) return null; // the embedded LiteDB store
        try
        {
            return new Npgsql.NpgsqlConnectionStringBuilder(value).Host is { Length: > 0 } ? null : $"--{key} names no Host (Host=…;Database=…)";
        }
        catch (Exception e) when (e is ArgumentException or FormatException or KeyNotFoundException)
        {
            return $"--{key} is not a PostgreSQL connection string (Host=…;Database=…): {e.Message}";
        }
    }

    /// <summary>A value as an error may echo it: at most 40 characters, control characters as '?'.</summary>
    private static string Show(string s) => new string(s.Take(40).Select(c => char.IsControl(c) ? '?' : c).ToArray()) + (s.Length > 40 ? "…" : "");

    /// <summary>The <see cref="TrustedKeys"/> as PEM texts (read once): handed to devices at enrollment.</summary>
    public List<string> SigningKeyPems() => _pems ??= TrustedKeys.Count == 0 ? [] : Protocol.Packages.PackageSignature.ReadPems(TrustedKeys);

    /// <summary>
    /// Largest model package a push may upload (MB, default 1024: an fp32 model of 500 MB with room to spare). One
    /// setting for Kestrel's request body limit and the registry's own check; a bigger push gets a 413 naming it.
    /// </summary>
    public int MaxPackageMb { get; set; } = 1024;

    /// <summary>
    /// Port of a second HTTP listener that serves only <c>GET /metrics</c>, without a token (for a Prometheus that is
    /// not given one); 0 (default): none. <c>/metrics</c> on the API's own address always needs a viewer token.
    /// </summary>
    public int MetricsPort { get; set; }
    /// <summary>Address the <see cref="MetricsPort"/> listener binds (default 127.0.0.1: this machine only).</summary>
    public string MetricsAddress { get; set; } = "127.0.0.1";
    /// <summary>
    /// Fleet gauges of <c>/metrics</c> (devices by presence and drift status, rollouts, store size) read the store at most
    /// this often (seconds, default 15), however often Prometheus scrapes; 0: on every scrape.
    /// </summary>
    public double MetricsSampleSeconds { get; set; } = 15;

    /// <summary>How long an enrollment token stays valid.</summary>
    public double EnrollTokenHours { get; set; } = 24;
    /// <summary>
    /// A device not seen for this long (a duration: <c>90s</c>, <c>5m</c>, <c>1h</c>; default 5 minutes) raises an offline alert
    /// (<see cref="Alerts.OfflineAlerts"/>); it is cleared when the device comes back.
    /// </summary>
    public string OfflineAfter { get; set; } = "5m";

    /// <summary><see cref="OfflineAfter"/> as a time span (checked by <see cref="Problem"/> before the hub starts).</summary>
    public TimeSpan OfflineAfterSpan() => Protocol.Text.Durations.TryParse(OfflineAfter, out var span, out _) ? span : TimeSpan.FromMinutes(5);

    /// <summary>How often the rollout engine takes a step (ms).</summary>
    public int RolloutTickMs { get; set; } = 1000;
}
