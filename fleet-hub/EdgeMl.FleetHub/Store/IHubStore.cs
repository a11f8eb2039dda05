namespace EdgeMl.FleetHub.Store;

/// <summary>
/// Everything the hub keeps: device batches (exactly once per (device, boot, class, seq)), presence, the
/// registry with enrollment and health, API tokens, rollouts, the audit trail and model packages. LiteDB
/// (<see cref="LiteDbHubStore"/>) is the embedded default; PostgreSQL (<see cref="PostgresHubStore"/>) is the shared
/// store several hub replicas use at once. Every method is safe to call from many threads.
/// </summary>
public interface IHubStore : IDisposable
{
    /// <summary>Stores several devices' batches in one transaction, in order; returns how many records were new.</summary>
    int StoreBatches(IReadOnlyList<(string Device, IReadOnlyList<IncomingRecord> Records)> batches, DateTimeOffset receivedAt);

    /// <summary>
    /// The device's presence (<c>online</c>, <c>offline</c>) as its status topic says; a change is kept in its presence history.
    /// Only <c>online</c> sets last seen to <paramref name="at"/>: last seen is when the hub last heard from the device (a
    /// status or a batch), and <c>offline</c> comes from the broker's Last Will or the hub itself, not from the device.
    /// </summary>
    void SetPresence(string device, string state, string? boot, DateTimeOffset at);

    List<DeviceEntry> Devices();

    DeviceEntry? FindDevice(string id);

    /// <summary>
    /// The newest stored records of a device, newest first; only those of <paramref name="recordClass"/> when given.
    /// Newest: by the device's own time <c>at</c> in the PostgreSQL store (its key), by arrival in the embedded one; the
    /// two agree while the device's clock runs forward (the API shows them sorted by <c>at</c> either way).
    /// </summary>
    List<HubRecord> Records(string device, int limit, string? recordClass = null);

    /// <summary>Registers a device with a one-time enrollment token (hash); refuses one enrolled and not revoked.</summary>
    void CreateEnrollment(string id, string? group, IReadOnlyDictionary<string, string> tags, string tokenHash, DateTimeOffset expires, DateTimeOffset now);

    /// <summary>Exchanges an enrollment token (hash) for the device's password (hash); null when unknown, used or expired.</summary>
    string? ClaimEnrollment(string tokenHash, string secretHash, DateTimeOffset now);

    DeviceAccess CheckDevice(string id, string password);

    bool Revoke(string id, DateTimeOffset now);

    /// <summary>The model the operator wants on the device (name@version), and what the device last reported (JSON).</summary>
    void SetModelState(string id, string? desired, string? reportedJson);

    /// <summary>The device's drift status as last evaluated (ok, watch, moderate, major).</summary>
    void SetDriftStatus(string id, string status, DateTimeOffset at);

    /// <summary>
    /// Registers a model version with its package (the whole .edgepkg, <see cref="ModelEntry.SizeBytes"/> bytes); false
    /// when that name and version exist already (versions are immutable). The package is stored before the entry is
    /// visible, so a listed model can always be downloaded.
    /// </summary>
    bool AddModel(ModelEntry model, ReadOnlyMemory<byte> package);

    /// <summary>The stored package of a model version as a read-only, seekable stream (for HTTP range requests); null when unknown. The caller disposes it.</summary>
    Stream? OpenPackage(string name, string version);

    /// <summary>
    /// Whether this process runs <paramref name="work"/> (e.g. <c>rollouts</c>) now: one replica at a time on a shared
    /// store, always true on the embedded one. Asked before each step; a replica that dies loses it with its database
    /// session, and another replica gets it at its next ask. False (never an exception) when the store cannot tell.
    /// </summary>
    bool Leads(string work);

    /// <summary>
    /// Gives up <paramref name="work"/> taken with <see cref="Leads"/>, so another replica takes it at its next ask; nothing
    /// when this process does not hold it. Never throws (a store that cannot be reached has freed it with the session).
    /// </summary>
    void Release(string work);

    /// <summary>
    /// Remembers that a hub replica keeps a persistent session at the external broker under the MQTT client identifier
    /// <paramref name="clientId"/> (<c>--ClientId</c>), so that when it dies for good another replica can take over what the
    /// broker queued for it (<see cref="BrokerSessions"/>). Idempotent. Throws <see cref="IOException"/> when the store
    /// cannot be reached.
    /// </summary>
    void RememberBrokerSession(string clientId);

    /// <summary>Forgets a replica's broker session (it was ended at the broker). Throws <see cref="IOException"/> when the store cannot be reached.</summary>
    void ForgetBrokerSession(string clientId);

    /// <summary>The client identifiers of the replicas' broker sessions remembered (<see cref="RememberBrokerSession"/>), in ordinal order.</summary>
    IReadOnlyList<string> BrokerSessions();

    /// <summary>
    /// Tells whichever replica leads <paramref name="work"/> (<see cref="Leads"/>) about <paramref name="items"/> (e.g. the
    /// devices whose drift windows this replica just stored); it reads them with <see cref="TakeSignals"/>. PostgreSQL:
    /// <c>NOTIFY</c> on a channel per kind of work; the embedded store: in memory. Best effort: a replica that was not
    /// listening misses them, and its next <see cref="TakeSignals"/> says so (<see cref="SignalBatch.Lost"/>).
    /// Throws <see cref="IOException"/> when the store cannot be reached.
    /// </summary>
    void Signal(string work, IReadOnlyCollection<string> items);

    /// <summary>
    /// The items signalled for <paramref name="work"/> since the last call (every replica hears them; one that does not lead
    /// drops them). <see cref="SignalBatch.Lost"/>: some may have been missed (the first call, a listener that reconnected,
    /// too many waiting), so the caller looks at everything instead.
    /// </summary>
    SignalBatch TakeSignals(string work);

    /// <summary>
    /// Holds a store-wide lock on <paramref name="work"/> (e.g. <c>rollouts</c>) until the result is disposed: a
    /// read-modify-write under it is not interleaved with another replica's (the rollout engine's step and an operator's
    /// pause or abort on another replica). Waits while another holder has it. PostgreSQL: a session-level advisory lock
    /// on a pooled connection (released with the session if the replica dies); the embedded store: a lock in this process.
    /// Throws <see cref="IOException"/> when the store cannot be reached.
    /// </summary>
    IDisposable Exclusive(string work);

    /// <summary>
    /// Retention: removes the records (all classes: telemetry, health, drift …) the hub received before
    /// <paramref name="cutoff"/>; returns how many. Presence changes before it and alerts cleared before it go too. Exactly-once still holds for them (a re-sent old record is not
    /// stored again). Registry, audit and packages are kept. The PostgreSQL store removes by the records' own time
    /// instead, a whole day's partition at a time (the day ended before the cutoff), and by the receive time only for
    /// records whose time had no partition (implausible ones); it also creates the coming days' partitions.
    /// </summary>
    long RemoveRecordsBefore(DateTimeOffset cutoff);

    ModelEntry? FindModel(string name, string version);

    List<ModelEntry> Models();

    /// <summary>Keeps a rollout (its JSON, <see cref="Rollouts.Rollout"/>) so that a hub restart resumes it.</summary>
    void SaveRollout(string id, string state, string json);

    string? FindRollout(string id);

    List<string> RolloutJsons();

    /// <summary>The desired state last published to a device (label name@version, and the message), re-published when the hub starts.</summary>
    void SetDesired(string id, string label, string json);

    List<(string Device, string Json)> DesiredStates();

    /// <summary>Appends to the audit trail (never changed or removed).</summary>
    void AddAudit(AuditEntry entry);

    List<AuditEntry> Audit(AuditQuery query);

    /// <summary>The name behind an API token (for the audit trail); null when unknown.</summary>
    string? ApiTokenName(string tokenHash);

    /// <summary>Adds an API token (hash) with a role and a name; <paramref name="expires"/>: when it stops working (null: never).</summary>
    void AddApiToken(string tokenHash, string role, string name, DateTimeOffset now, DateTimeOffset? expires = null);

    /// <summary>The role of an API token that is known, not revoked and not expired at <paramref name="now"/>; else null.</summary>
    string? ApiTokenRole(string tokenHash, DateTimeOffset now);

    bool HasApiTokens(string role, DateTimeOffset now);

    List<ApiTokenEntry> ApiTokens();

    /// <summary>Revokes every active token called <paramref name="name"/> (they stop working at once); returns their hashes.</summary>
    List<string> RevokeApiTokens(string name, DateTimeOffset now);

    /// <summary>Deletes the tokens called <paramref name="name"/> but the one whose hash is <paramref name="except"/>.</summary>
    void RemoveApiTokens(string name, string? except);

    /// <summary>Counts of the whole fleet, per group, and the model versions devices run (<see cref="FleetRows.Summarize"/> says how each is counted).</summary>
    FleetSummary Summary();

    /// <summary>Every device's compact row (no health JSON, no history).</summary>
    List<DeviceRow> DeviceRows();

    /// <summary>One page of the fleet table: filtered, sorted and paged by the store (<see cref="DeviceQuery"/>).</summary>
    DevicePage QueryDevices(DeviceQuery query);

    /// <summary>
    /// The records of <paramref name="recordClass"/> (null: of every class) the device produced (its own time <c>at</c>, ms)
    /// from <paramref name="since"/> (inclusive; null: open) to <paramref name="until"/> (exclusive; null: open), newest first
    /// (by <c>at</c>, then boot and seq descending), at most <paramref name="limit"/>; empty for an unknown device.
    /// </summary>
    List<HubRecord> RecordsBetween(string device, string? recordClass, DateTimeOffset? since, DateTimeOffset? until, int limit);

    /// <summary>
    /// The records of <paramref name="recordClass"/> that each of <paramref name="devices"/> produced (its own time
    /// <c>at</c>) from <paramref name="since"/> on: per device newest first and at most <paramref name="limitPerDevice"/>,
    /// the devices in the order given (a device without such records, or unknown, adds nothing). One round trip for a
    /// whole group or fleet (drift of a scope), reading only the day partitions from <paramref name="since"/> on.
    /// </summary>
    List<(string Device, HubRecord Record)> RecordsOfDevices(IReadOnlyList<string> devices, string recordClass, DateTimeOffset since, int limitPerDevice);

    /// <summary>
    /// The device's presence changes (kept when <see cref="SetPresence"/> changes it), oldest first: the one in effect at
    /// <paramref name="since"/> (when there is one), then every one after it; at most <paramref name="limit"/>.
    /// </summary>
    List<PresenceChange> PresenceHistory(string device, DateTimeOffset since, int limit);

    /// <summary>
    /// Raises an alert; null (nothing stored) when one of that (kind, device, subject) is active already, or when the same one
    /// (same key and time) was raised before. Safe when several replicas raise the same alert at once: one of them stores it.
    /// </summary>
    AlertEntry? RaiseAlert(string kind, string device, string subject, DateTimeOffset at, string severity, string message);

    /// <summary>Clears the active alert of that (kind, device, subject); returns it cleared, or null when none was active.</summary>
    AlertEntry? ClearAlert(string kind, string device, string subject, DateTimeOffset at);

    List<AlertEntry> Alerts(AlertQuery query);

    /// <summary>Keeps a batch that could not be stored, with the reason, for an operator to look at (never re-queued).</summary>
    void Quarantine(QuarantinedBatch batch);

    /// <summary>Quarantined batches, newest first; only <paramref name="device"/>'s when given.</summary>
    List<QuarantinedBatch> Quarantined(string? device, int limit);

    /// <summary>
    /// Bytes the store takes now: the embedded store's files (<c>hub.db</c>, its log, the model packages); PostgreSQL's
    /// <c>pg_database_size</c> of the database. Costs a directory walk or a query: sampled, not called per record.
    /// </summary>
    /// <exception cref="IOException">The store cannot be reached (PostgreSQL).</exception>
    long SizeBytes();

    /// <summary>
    /// Keeps a dashboard session (<see cref="DashboardSession"/>): the hash of its cookie value, the API token (hash) it
    /// was signed in with, its CSRF token. Sessions that have expired are removed on the way. Shared by all replicas of a
    /// shared store, so a session signed in on one replica works on the others.
    /// </summary>
    void AddSession(DashboardSession session, DateTimeOffset now);

    /// <summary>The session whose cookie hashes to <paramref name="idHash"/>, when it exists and has not expired at <paramref name="now"/>; else null.</summary>
    DashboardSession? FindSession(string idHash, DateTimeOffset now);

    /// <summary>Ends a session (sign-out); nothing when it does not exist.</summary>
    void RemoveSession(string idHash);
}

/// <summary>
/// A dashboard session: <see cref="IdHash"/> is the SHA-256 of the cookie's value (the value itself is never stored),
/// <see cref="TokenHash"/> the API token it was signed in with (its role and its revocation apply), <see cref="Csrf"/>
/// the token a mutating request must carry in <c>X-CSRF-Token</c>.
/// </summary>
public sealed record DashboardSession(string IdHash, string TokenHash, string Csrf, DateTimeOffset Created, DateTimeOffset Expires);

/// <summary>One record as it came from a device.</summary>
public sealed record IncomingRecord(string Boot, long Seq, string Class, long At, string Data);

/// <summary>One stored record; <see cref="Data"/> is its JSON as the device sent it.</summary>
public sealed record HubRecord(string Boot, long Seq, string Class, long At, string Data);

/// <summary>A device in the registry. <see cref="Enrollment"/>: pending, enrolled, revoked or unregistered (seen on an external broker only).</summary>
public sealed record DeviceEntry(
    string Id, string? Group, IReadOnlyDictionary<string, string> Tags, string Enrollment, DateTimeOffset? EnrolledAt, DateTimeOffset? RevokedAt,
    string Presence, string? Boot, DateTimeOffset? LastSeen, long Records, string? Model, string? ModelVersion, double? LatencyP99Ms,
    DateTimeOffset? HealthAt, string? HealthJson, string? DriftStatus = null, DateTimeOffset? DriftAt = null,
    string? Desired = null, string? ReportedJson = null);

/// <summary>
/// A model version in the registry: the package's SHA-256 and size, who signed it (key id), who pushed it, when.
/// <see cref="File"/>: where the embedded store keeps the package (relative to its data directory); the PostgreSQL store keeps it in the database.
/// </summary>
public sealed record ModelEntry(string Name, string Version, string PackageSha256, long SizeBytes, string ModelSha256, string KeyId, string PushedBy, DateTimeOffset PushedAt, string File);

/// <summary>
/// One line of the audit trail: who (<see cref="Actor"/>: an API token's name, <c>hub</c> for the rollout engine, a
/// device id for what a device reported) did what (<see cref="Action"/>, e.g. <c>model.push</c>, <c>rollout.start</c>,
/// <c>device.model</c>) to what, when.
/// </summary>
public sealed record AuditEntry(DateTimeOffset At, string Actor, string Action, string Subject, string Details, string? Device = null);

public sealed record AuditQuery(DateTimeOffset? Since = null, string? Action = null, string? Device = null, string? Subject = null);

/// <summary>An API token as listed (never the token itself): state is <c>active</c>, <c>expired</c> or <c>revoked</c>.</summary>
public sealed record ApiTokenEntry(string Name, string Role, DateTimeOffset Created, DateTimeOffset? Expires = null, DateTimeOffset? RevokedAt = null, string State = "active");

/// <summary>A batch set aside because storing it failed on its own: who sent it, when, why, and its records (JSON array).</summary>
public sealed record QuarantinedBatch(long Id, string Device, DateTimeOffset At, string Reason, int Records, string RecordsJson);

public enum DeviceAccess
{
    Allowed,
    Unknown,
    Revoked,
    BadPassword,
}

/// <summary>Items signalled for a kind of work (<see cref="IHubStore.TakeSignals"/>); <see cref="Lost"/>: others may have been missed.</summary>
public sealed record SignalBatch(IReadOnlyCollection<string> Items, bool Lost);
