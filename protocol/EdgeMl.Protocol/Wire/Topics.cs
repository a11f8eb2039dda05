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
