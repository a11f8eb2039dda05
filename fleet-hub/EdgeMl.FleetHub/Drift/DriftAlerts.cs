using System.Text.Json;
using EdgeMl.FleetHub.Broker;
using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Drift;

/// <summary>
/// Drift alerts, judged on <b>one replica</b>: the one that leads <c>drift-alerts</c> (<see cref="IHubStore.Leads"/>, a
/// PostgreSQL advisory lock; always this process on the embedded store). Any replica that stores drift windows signals
/// the devices (<see cref="Stored"/>, <see cref="IHubStore.Signal"/>); every second the leader tests those devices'
/// drift over the last hour again. A change of status is kept on the device (visible in its status) and, when it becomes
/// moderate or major, published as an alert on <c>edgeml/alerts/drift</c> for alert consumers and logged, and kept in the
/// alert list (<c>GET /api/alerts</c>) while it lasts. Their groups and the fleet are tested the same way (merged windows;
/// at most every 10 s each), their alerts kept in the alert list too (device "", subject <c>group NAME</c> or
/// <c>fleet</c>), so a replica that takes over knows what was announced already. A replica that becomes leader (at start,
/// or when the leader died and its lock was freed) first tests every device seen in the last hour and every group, so
/// nothing signalled to the dead leader is missed; an alert is published only when the store took it
/// (<see cref="IHubStore.RaiseAlert"/> allows one active per device or scope), so each event is announced once.
/// </summary>
public sealed partial class DriftAlerts(
    IHubStore store, RegistryBaselines baselines, IHubPublisher publisher, TimeProvider time, ILogger<DriftAlerts> logger, Alerts.FleetAlerts alerts)
    : BackgroundService
{
    public const string Topic = "edgeml/alerts/drift";

    /// <summary>The kind of work (<see cref="IHubStore.Leads"/>) whose leader judges drift.</summary>
    public const string Work = "drift-alerts";

    private static readonly string[] Order = ["no data", "ok", "watch", "moderate", "major"];
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);
    private static readonly TimeSpan ScopeEvery = TimeSpan.FromSeconds(10);

    public static DriftView DeviceDrift(IHubStore store, RegistryBaselines baselines, string device, DateTimeOffset since) =>
        DriftAnalysis.Analyze($"device {device}", Windows(store, [device], since), baselines.For);

    /// <summary>
    /// The drift windows the devices produced from <paramref name="since"/> on (at most 10,000 per device, newest first per
    /// device), read in one store query per 1,000 devices; a stored window that does not parse is left out.
    /// </summary>
    public static List<(string Device, Protocol.Drift.DriftReport Report)> Windows(IHubStore store, IEnumerable<string> devices, DateTimeOffset since)
    {
        var result = new List<(string, Protocol.Drift.DriftReport)>();
        // 1,000 devices per query: a fleet of 100,000 is 100 short queries, not one that may run into the command timeout.
        foreach (var chunk in devices.Distinct(StringComparer.Ordinal).Chunk(1000))
        {
            foreach (var (device, r) in store.RecordsOfDevices(chunk, "drift", since, 10_000))
            {
                if (DriftAnalysis.Parse(r.Data) is { } report) result.Add((device, report));
            }
        }

        return result;
    }

    private readonly Dictionary<string, DateTimeOffset> _scopeChecked = new(StringComparer.Ordinal);
    private readonly HashSet<string> _pendingScopes = new(StringComparer.Ordinal);
    private bool _leading;
    private bool _sweep;
    private long _failures;

    /// <summary>Passes that failed (store away); the next pass looks at every device again.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>Whether this replica judged drift at its last pass.</summary>
    public bool Leading => _leading;

    /// <summary>Ingest stored new drift windows of these devices (on any replica): the leader tests them at its next pass.</summary>
    /// <exception cref="IOException">The store cannot be reached (the caller logs it).</exception>
    public void Stored(IReadOnlyList<string> devices) => store.Signal(Work, devices.Distinct(StringComparer.Ordinal).ToList());

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), time);
        do
        {
            try
            {
                await Task.Run(Pass, stoppingToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // What was taken from the signals is not judged: the next pass looks at every device.
                Interlocked.Increment(ref _failures);
                _sweep = true;
                LogFailed(logger, e.Message);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    /// <summary>
    /// One pass: on the leader, the devices signalled since the last pass (every device seen in the last hour when this
    /// replica just became leader, or signals may have been missed) are tested, then the scopes due.
    /// </summary>
    public void Pass()
    {
        var signals = store.TakeSignals(Work); // taken on every replica, so that a follower's do not pile up
        if (!store.Leads(Work))
        {
            if (_leading) LogFollowing(logger);
            _leading = false;
            return;
        }

        var now = time.GetUtcNow();
        var devices = signals.Items.ToHashSet(StringComparer.Ordinal);
        var sweep = !_leading || signals.Lost || _sweep;
        if (!_leading) LogLeading(logger);
        _leading = true;
        _sweep = false;
        if (!sweep && devices.Count == 0 && _pendingScopes.Count == 0) return; // nothing new: the registry is not read
        var registry = store.DeviceRows();
        if (sweep)
        {
            devices.UnionWith(registry.Where(d => d.LastSeen is { } seen && now - seen <= TimeSpan.FromHours(1)).Select(d => d.Id));
            _pendingScopes.UnionWith(registry.Where(d => d.Group is not null).Select(d => $"group {d.Group}"));
            _pendingScopes.Add("fleet");
            _scopeChecked.Clear();
        }

        if (devices.Count > 0)
        {
            CheckDevices([.. devices], registry);
            _pendingScopes.UnionWith(registry.Where(d => devices.Contains(d.Id) && d.Group is not null).Select(d => $"group {d.Group}"));
            _pendingScopes.Add("fleet");
        }

        CheckScopes(registry, now);
    }

    /// <summary>
    /// Groups and the whole fleet: their merged drift over the last hour, tested at most every 10 s per scope. Their
    /// status lives in the alert list (an active <c>drift</c> alert of device "" and subject scope: warning = moderate,
    /// critical = major); an alert (<c>"scope": "group line-a"</c> or <c>"fleet"</c>) is published when one rises to
    /// moderate or major and the store took the new alert.
    /// </summary>
    private void CheckScopes(List<DeviceRow> registry, DateTimeOffset now)
    {
        foreach (var scope in _pendingScopes.ToList())
        {
            if (_scopeChecked.TryGetValue(scope, out var last) && now - last < ScopeEvery) continue;
            _pendingScopes.Remove(scope);
            _scopeChecked[scope] = now;
            var members = scope == "fleet" ? registry.Select(d => d.Id) : registry.Where(d => $"group {d.Group}" == scope).Select(d => d.Id);
            var view = DriftAnalysis.Analyze(scope, Windows(store, members, now.AddHours(-1)), baselines.For);
            var active = store.Alerts(new AlertQuery(Active: true, Kind: "drift", Device: "", Limit: 1000)).FirstOrDefault(a => a.Subject == scope);
            var previous = active is null ? "ok" : active.Severity == "critical" ? "major" : "moderate";
            var drifting = Store.FleetPresence.Drifting(view.Status);
            if (!drifting)
            {
                if (active is not null) alerts.Clear("drift", "", scope, now);
                continue;
            }

            if (view.Status == previous) continue;
            if (active is not null) alerts.Clear("drift", "", scope, now);
            var features = view.Features.Where(f => f.Status is "moderate" or "major").Select(f => f.Feature).ToList();
            var raised = alerts.Raise("drift", "", scope, now, view.Status == "major" ? "critical" : "warning",
                $"{scope}: drift {view.Status} (was {previous}): {string.Join(", ", features)}");
            if (raised is null || Array.IndexOf(Order, view.Status) <= Array.IndexOf(Order, previous)) continue;
            LogAlert(logger, scope, previous, view.Status, string.Join(", ", features));
            _ = publisher.PublishAsync(Topic, JsonSerializer.SerializeToUtf8Bytes(new DriftAlert(scope, view.Status, previous, features, view.Model, view.Version, now), Web));
        }
    }

    /// <summary>
    /// Each device's drift over the last hour against the status it has: its windows are read for 100 devices at a time
    /// (one store query each), its status from the registry read at the start of the pass (only the leader writes it).
    /// </summary>
    private void CheckDevices(List<string> devices, List<DeviceRow> registry)
    {
        var status = registry.ToDictionary(d => d.Id, d => d.DriftStatus, StringComparer.Ordinal);
        foreach (var chunk in devices.Chunk(100))
        {
            var now = time.GetUtcNow();
            var windows = Windows(store, chunk, now.AddHours(-1)).ToLookup(w => w.Device, StringComparer.Ordinal);
            foreach (var device in chunk)
            {
                var view = DriftAnalysis.Analyze($"device {device}", [.. windows[device]], baselines.For);
                var previous = (status.TryGetValue(device, out var known) ? known : store.FindDevice(device)?.DriftStatus) ?? "no data";
                if (view.Status == previous) continue;
                Changed(device, previous, view, now);
            }
        }
    }

    /// <summary>A device's drift status changed: kept on the device, its alert cleared or raised, a rise published.</summary>
    private void Changed(string device, string previous, DriftView view, DateTimeOffset now)
    {
        store.SetDriftStatus(device, view.Status, now);
        // The alert list (GET /api/alerts): one active drift alert per device while it is moderate or major, at its severity.
        if (Store.FleetPresence.Drifting(previous)) alerts.Clear("drift", device, "", now);
        if (!Store.FleetPresence.Drifting(view.Status)) return;
        var drifting = view.Features.Where(f => f.Status is "moderate" or "major").Select(f => f.Feature).ToList();
        var raised = alerts.Raise("drift", device, "", now, view.Status == "major" ? "critical" : "warning",
            $"drift {view.Status} (was {previous}): {string.Join(", ", drifting)}");
        // Published only when the store took the alert: one announcement per change, whichever replica got here first.
        if (raised is null || Array.IndexOf(Order, view.Status) <= Array.IndexOf(Order, previous)) return;
        LogAlert(logger, device, previous, view.Status, string.Join(", ", drifting));
        var alert = JsonSerializer.SerializeToUtf8Bytes(new DriftAlert(device, view.Status, previous, drifting, view.Model, view.Version, now), Web);
        _ = publisher.PublishAsync(Topic, alert);
    }

    [LoggerMessage(EventId = 2502, Level = LogLevel.Information, Message = "This replica judges drift alerts now (it leads drift-alerts)")]
    private static partial void LogLeading(ILogger logger);

    [LoggerMessage(EventId = 2503, Level = LogLevel.Information, Message = "This replica no longer judges drift alerts (another replica leads drift-alerts)")]
    private static partial void LogFollowing(ILogger logger);

    [LoggerMessage(EventId = 2504, Level = LogLevel.Warning, Message = "Drift alert pass failed (the next one looks at every device): {Error}")]
    private static partial void LogFailed(ILogger logger, string error);

    [LoggerMessage(EventId = 2500, Level = LogLevel.Warning, Message = "Drift alert: {Scope} went from {Previous} to {Status} (drifting: {Features})")]
    private static partial void LogAlert(ILogger logger, string scope, string previous, string status, string features);
}

/// <summary>An alert: <see cref="Scope"/> is a device id, <c>group NAME</c> or <c>fleet</c>.</summary>
public sealed record DriftAlert(string Scope, string Status, string Previous, List<string> Features, string? Model, string? Version, DateTimeOffset At);
