using System.Text.Json;
using EdgeMl.FleetHub.Broker;
using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Drift;

/// <summary>
/// After new drift windows of a device are stored: its drift over the last hour is tested again; a change of
/// status is kept on the device (visible in its status) and, when it gets worse, published as an alert on
/// <c>edgeml/alerts/drift</c> for alert consumers and logged.
/// </summary>
public sealed partial class DriftAlerts(IHubStore store, IHubPublisher publisher, TimeProvider time, ILogger<DriftAlerts> logger)
{
    public const string Topic = "edgeml/alerts/drift";
    private static readonly string[] Order = ["no data", "ok", "watch", "moderate", "major"];
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    public static DriftView DeviceDrift(IHubStore store, string device, DateTimeOffset since) =>
        DriftAnalysis.Analyze($"device {device}", Windows(store, [device], since));

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

    public void Check(IEnumerable<string> devices)
    {
        foreach (var device in devices.Distinct())
        {
            var now = time.GetUtcNow();
            var view = DeviceDrift(store, device, now.AddHours(-1));
            var previous = store.FindDevice(device)?.DriftStatus ?? "no data";
            if (view.Status == previous) continue;
            store.SetDriftStatus(device, view.Status, now);
            if (view.Status is not ("moderate" or "major") || Array.IndexOf(Order, view.Status) <= Array.IndexOf(Order, previous)) continue;
            var drifting = view.Features.Where(f => f.Status is "moderate" or "major").Select(f => f.Feature).ToList();
            LogAlert(logger, device, previous, view.Status, string.Join(", ", drifting));
            var alert = JsonSerializer.SerializeToUtf8Bytes(new DriftAlert(device, view.Status, previous, drifting, view.Model, view.Version, now), Web);
            _ = publisher.PublishAsync(Topic, alert);
        }
    }

    [LoggerMessage(EventId = 2500, Level = LogLevel.Warning, Message = "Drift alert: device {Device} went from {Previous} to {Status} (drifting: {Features})")]
    private static partial void LogAlert(ILogger logger, string device, string previous, string status, string features);
}

public sealed record DriftAlert(string Device, string Status, string Previous, List<string> Features, string? Model, string? Version, DateTimeOffset At);
