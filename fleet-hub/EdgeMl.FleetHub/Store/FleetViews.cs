namespace EdgeMl.FleetHub.Store;

/// <summary>
/// A device as the fleet table shows it: the registry's compact columns plus what its newest health report says
/// (<see cref="HealthDigest"/>), never its history. <see cref="Presence"/> is <c>online</c>, <c>offline</c> or
/// <c>neverSeen</c> (<see cref="FleetPresence"/>); <see cref="Healthy"/> is null until the device reported health.
/// </summary>
public sealed record DeviceRow(
    string Id, string? Group, IReadOnlyDictionary<string, string> Tags, string Presence, DateTimeOffset? LastSeen, string Enrollment,
    string? Model, string? Version, double? P99Ms, double? CpuPercent, double? MemoryPercent, double? TemperatureC, long? OutboxDepth, long? OutboxDropped,
    string? DriftStatus, bool? Healthy, string? Problems);

/// <summary>
/// A page of the fleet table: filters (all optional, combined with AND), one sort field, and the page.
/// <see cref="Q"/>: case-insensitive substring of the id or the group; <see cref="Status"/>: a <see cref="FleetPresence"/> value,
/// an enrollment state (<c>pending</c>, <c>enrolled</c>, <c>revoked</c>, <c>unregistered</c>) or <c>unhealthy</c>;
/// <see cref="Model"/>: a model name, with <see cref="ModelVersion"/> for one version; <see cref="TagKey"/> with
/// <see cref="TagValue"/> (null: any value); <see cref="Drift"/>: a drift status (<c>ok</c>, <c>watch</c>, <c>moderate</c>,
/// <c>major</c>), <c>none</c> (never evaluated or no data) or <c>drifting</c> (moderate or major).
/// <see cref="Sort"/> is one of <see cref="SortFields"/>; ties go by id. <see cref="Page"/> counts from 1.
/// </summary>
public sealed record DeviceQuery(
    string? Q = null, string? Group = null, string? Status = null, string? Model = null, string? ModelVersion = null, string? TagKey = null, string? TagValue = null,
    string? Drift = null, string Sort = "id", bool Descending = false, int Page = 1, int PageSize = 50)
{
    /// <summary>The fields a page can be sorted by (API names).</summary>
    public static readonly IReadOnlyList<string> SortFields =
        ["id", "group", "presence", "lastSeen", "model", "p99Ms", "cpuPercent", "temperatureC", "outboxDepth", "driftStatus"];

    public static readonly IReadOnlyList<string> Statuses =
        [FleetPresence.Online, FleetPresence.Offline, FleetPresence.NeverSeen, "pending", "enrolled", "revoked", "unregistered", "unhealthy"];

    public static readonly IReadOnlyList<string> DriftFilters = ["ok", "watch", "moderate", "major", "none", "drifting"];

    public long Offset => (long)(Page - 1) * PageSize;
}

/// <summary>One page of devices and how many match in all.</summary>
public sealed record DevicePage(long Total, int Page, int PageSize, List<DeviceRow> Items);

/// <summary>Counts of one scope (the fleet or a group): every device is exactly one of online, offline, never seen.</summary>
public sealed record FleetCounts(string? Group, long Total, long Online, long Offline, long NeverSeen, long Unhealthy, long Drifting);

/// <summary>A model version and how many devices report running it (their newest health report).</summary>
public sealed record ModelCount(string Name, string Version, long Devices);

public sealed record FleetSummary(FleetCounts Fleet, List<FleetCounts> Groups, List<ModelCount> Models);

/// <summary>A change of a device's presence, as the hub saw it (<c>online</c> or <c>offline</c>).</summary>
public sealed record PresenceChange(DateTimeOffset At, string Presence);

/// <summary>
/// An alert the hub keeps: <see cref="Kind"/> is <c>offline</c>, <c>drift</c>, <c>sensor</c> or <c>rule</c>;
/// <see cref="Subject"/> tells apart several alerts of one kind on one device (the sensor's or the rule's name; empty
/// otherwise). At most one alert per (kind, device, subject) is active (<see cref="ClearedAt"/> null) at a time.
/// <see cref="Severity"/>: <c>info</c>, <c>warning</c> or <c>critical</c>.
/// </summary>
public sealed record AlertEntry(
    long Id, string Kind, string Device, string Subject, DateTimeOffset RaisedAt, DateTimeOffset? ClearedAt, string Severity, string Message);

/// <summary>
/// Which alerts: <see cref="Active"/> true: not cleared, false: cleared, null: both; <see cref="Since"/>: raised at or
/// after it (null: any time; both stores read it from their index on the raise time); newest raised first, at most
/// <see cref="Limit"/>.
/// </summary>
public sealed record AlertQuery(bool? Active = null, string? Kind = null, string? Device = null, int Limit = 100, DateTimeOffset? Since = null);

/// <summary>How the fleet views name a device's presence.</summary>
public static class FleetPresence
{
    public const string Online = "online";
    public const string Offline = "offline";
    public const string NeverSeen = "neverSeen";

    /// <summary>Online when its last status said so; never seen when the hub has heard nothing from it; offline otherwise.</summary>
    public static string Of(string stored, DateTimeOffset? lastSeen) => stored == "online" ? Online : lastSeen is null ? NeverSeen : Offline;

    /// <summary>Drift statuses that count as drifting.</summary>
    public static bool Drifting(string? drift) => drift is "moderate" or "major";

    /// <summary>Severity order of drift statuses for sorting (none first).</summary>
    public static int DriftRank(string? drift) => drift switch { "ok" => 1, "watch" => 2, "moderate" => 3, "major" => 4, _ => 0 };
}
