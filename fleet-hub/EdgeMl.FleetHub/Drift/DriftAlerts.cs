using System.Text.Json;
using EdgeMl.FleetHub.Broker;
using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Drift;

/// <summary>
/// After new drift windows of a device are stored: its drift over the last hour is tested again; a change of
/// status is kept on the device (visible in its status) and, when it becomes moderate or major, published as an
/// alert on <c>edgeml/alerts/drift</c> for alert consumers and logged. Its group and the fleet are tested the
/// same way (merged windows; at most every 10 s each).
/// </summary>
public sealed partial class DriftAlerts(
    IHubStore store, RegistryBaselines baselines, IHubPublisher publisher, TimeProvider time, ILogger<DriftAlerts> logger, Alerts.FleetAlerts alerts)
{
    public const string Topic = "edgeml/alerts/drift";
    private static readonly string[] Order = ["no data", "ok", "watch", "moderate", "major"];
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    public static DriftView DeviceDrift(IHubStore store, RegistryBaselines baselines, string device, DateTimeOffset since) =>
        DriftAnalysis.Analyze($"device {device}", Windows(store, [device], since), baselines.For);

    public static List<(string Device, Protocol.Drift.DriftReport Report)> Windows(IHubStore store, IEnumerable<string> devices, DateTimeOffset since)
    {
        var result = new List<(string, Protocol.Drift.DriftReport)>();
        var sinceMs = since.ToUnixTimeMilliseconds();
        foreach (var device in devices)
        {
            foreach (var r in store.Records(device, 10_000, "drift"))
            {
                if (r.At < sinceMs) break; // newest first
                if (DriftAnalysis.Parse(r.Data) is { } report) result.Add((device, report));
            }
        }

        return result;
    }

    private readonly Dictionary<string, (string Status, DateTimeOffset At)> _scopes = [];

    public void Check(IEnumerable<string> devices)
    {
        var list = devices.Distinct().ToList();
        CheckDevices(list);
        CheckScopes(list);
    }

    /// <summary>
    /// Groups and the whole fleet: their merged drift over the last hour, tested at most every 10 s per scope;
    /// an alert (<c>"scope": "group line-a"</c> or <c>"fleet"</c>) when one becomes moderate or major.
    /// </summary>
    private void CheckScopes(List<string> devices)
    {
        var now = time.GetUtcNow();
        var registry = store.Devices();
        var groups = registry.Where(d => devices.Contains(d.Id) && d.Group is not null).Select(d => d.Group!).Distinct();
        foreach (var scope in groups.Select(g => $"group {g}").Append("fleet"))
        {
            lock (_scopes)
            {
                if (_scopes.TryGetValue(scope, out var last) && now - last.At < TimeSpan.FromSeconds(10)) continue;
                _scopes[scope] = (last.Status ?? "no data", now);
            }

            var members = scope == "fleet" ? registry.Select(d => d.Id) : registry.Where(d => $"group {d.Group}" == scope).Select(d => d.Id);
            var view = DriftAnalysis.Analyze(scope, Windows(store, members, now.AddHours(-1)), baselines.For);
            string previous;
            lock (_scopes)
            {
                previous = _scopes[scope].Status;
                _scopes[scope] = (view.Status, now);
            }

            if (view.Status is not ("moderate" or "major") || Array.IndexOf(Order, view.Status) <= Array.IndexOf(Order, previous)) continue;
            var drifting = view.Features.Where(f => f.Status is "moderate" or "major").Select(f => f.Feature).ToList();
            LogAlert(logger, scope, previous, view.Status, string.Join(", ", drifting));
            _ = publisher.PublishAsync(Topic, JsonSerializer.SerializeToUtf8Bytes(new DriftAlert(scope, view.Status, previous, drifting, view.Model, view.Version, now), Web));
        }
    }

    private void CheckDevices(List<string> devices)
    {
        foreach (var device in devices)
        {
            var now = time.GetUtcNow();
            var view = DeviceDrift(store, baselines, device, now.AddHours(-1));
            var previous = store.FindDevice(device)?.DriftStatus ?? "no data";
            if (view.Status == previous) continue;
            store.SetDriftStatus(device, view.Status, now);
            // The alert list (GET /api/alerts): one active drift alert per device while it is moderate or major, at its severity.
            if (Store.FleetPresence.Drifting(previous)) alerts.Clear("drift", device, "", now);
            if (Store.FleetPresence.Drifting(view.Status))
            {
                var features = view.Features.Where(f => f.Status is "moderate" or "major").Select(f => f.Feature);
                alerts.Raise("drift", device, "", now, view.Status == "major" ? "critical" : "warning",
                    $"drift {view.Status} (was {previous}): {string.Join(", ", features)}");
            }

            if (view.Status is not ("moderate" or "major") || Array.IndexOf(Order, view.Status) <= Array.IndexOf(Order, previous)) continue;
            var drifting = view.Features.Where(f => f.Status is "moderate" or "major").Select(f => f.Feature).ToList();
            LogAlert(logger, device, previous, view.Status, string.Join(", ", drifting));
            var alert = JsonSerializer.SerializeToUtf8Bytes(new DriftAlert(device, view.Status, previous, drifting, view.Model, view.Version, now), Web);
            _ = publisher.PublishAsync(Topic, alert);
        }
    }

    [LoggerMessage(EventId = 2500, Level = LogLevel.Warning, Message = "Drift alert: {Scope} went from {Previous} to {Status} (drifting: {Features})")]
    private static partial void LogAlert(ILogger logger, string scope, string previous, string status, string features);
}

/// <summary>An alert: <see cref="Scope"/> is a device id, <c>group NAME</c> or <c>fleet</c>.</summary>
public sealed record DriftAlert(string Scope, string Status, string Previous, List<string> Features, string? Model, string? Version, DateTimeOffset At);
