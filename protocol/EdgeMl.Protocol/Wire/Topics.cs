namespace EdgeMl.Protocol.Wire;

/// <summary>MQTT topics (ARCHITECTURE.md): every topic carries the device id as a whole level, so an ACL can pin a device to its own.</summary>
public static class Topics
{
    public const string Root = "edgeml";

    public static string Status(string device) => $"{Root}/{device}/status";
    public static string Health(string device) => $"{Root}/{device}/health";
    public static string Telemetry(string device) => $"{Root}/{device}/tele";
    public static string Drift(string device) => $"{Root}/{device}/drift";
    public static string StateReported(string device) => $"{Root}/{device}/state/reported";
    public static string StateDesired(string device) => $"{Root}/{device}/state/desired";
    public static string Command(string device, string name) => $"{Root}/{device}/cmd/{name}";

    /// <summary>
    /// What a device may publish under its own <c>edgeml/{dev}/</c>, and whether it may be retained: <c>status</c> and
    /// <c>state/reported</c> are retained state; batches and command replies (<c>cmd/{name}/res</c>) are not.
    /// Anything else is refused like an ACL violation.
    /// </summary>
    public static bool IsDevicePublish(string subtopic, out bool mayRetain)
    {
        mayRetain = subtopic is "status" or "state/reported";
        if (mayRetain || subtopic is "tele" or "health" or "drift") return true;
        var parts = subtopic.Split('/');
        return parts.Length == 3 && parts[0] == "cmd" && parts[2] == "res" && parts[1].Length > 0;
    }

    /// <summary>Splits <c>edgeml/{dev}/{subtopic}</c>; false when the topic is not under a device (or has an empty level).</summary>
    public static bool TrySplit(string topic, out string device, out string subtopic)
    {
        device = subtopic = "";
        if (!topic.StartsWith(Root + "/", StringComparison.Ordinal)) return false;
        var rest = topic.AsSpan(Root.Length + 1);
        var slash = rest.IndexOf('/');
        if (slash <= 0 || slash == rest.Length - 1) return false;
        device = rest[..slash].ToString();
        subtopic = rest[(slash + 1)..].ToString();
        return !subtopic.Contains("//", StringComparison.Ordinal);
    }

    /// <summary>The topic the record class travels on.</summary>
    public static string For(RecordClass recordClass, string device) => recordClass switch
    {
        RecordClass.Alert or RecordClass.Telemetry => Telemetry(device),
        RecordClass.Health => Health(device),
        RecordClass.Drift => Drift(device),
        _ => throw new ArgumentOutOfRangeException(nameof(recordClass)),
    };
}

/// <summary>
/// What a stored-and-forwarded record is, in priority order: when the device's outbox is full, the
/// least important class is dropped first (telemetry before drift before health before alerts).
/// </summary>
public enum RecordClass
{
    Alert = 0,
    Health = 1,
    Drift = 2,
    Telemetry = 3,
}
