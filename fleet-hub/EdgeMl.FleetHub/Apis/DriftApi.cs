using System.Globalization;
using EdgeMl.FleetHub.Drift;
using EdgeMl.FleetHub.Security;
using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Apis;

/// <summary>REST (viewer): drift of a device, a group or the whole fleet over a time range, tested against the baseline of the model in the hub's registry.</summary>
public static class DriftApi
{
    public static void MapDriftApi(this WebApplication app)
    {
        app.MapGet("/api/drift", IResult (string? device, string? group, string? since, IHubStore store, RegistryBaselines baselines, TimeProvider time) =>
        {
            if (device is not null && group is not null) return TypedResults.BadRequest(new ApiError("give device or group, not both (neither: the whole fleet)"));
            if (!Protocol.Text.Durations.TryParse(since ?? "24h", out var span, out var error)) return TypedResults.BadRequest(new ApiError($"since: {error}"));
            var from = time.GetUtcNow() - span;
            if (device is not null)
            {
                return store.FindDevice(device) is null
                    ? TypedResults.NotFound(new ApiError($"no device '{device}'"))
                    : TypedResults.Ok(DriftAlerts.DeviceDrift(store, baselines, device, from));
            }

            var devices = store.Devices().Where(d => group is null || d.Group == group).Select(d => d.Id).ToList();
            if (group is not null && devices.Count == 0) return TypedResults.NotFound(new ApiError($"no device in group '{group}'"));
            return TypedResults.Ok(DriftAnalysis.Analyze(group is null ? "fleet" : $"group {group}", DriftAlerts.Windows(store, devices, from), baselines.For));
        }).RequireRole(ApiAuth.Viewer);
    }

    /// <summary><c>30m</c>, <c>24h</c>, <c>7d</c>, <c>90s</c> (<see cref="Protocol.Text.Durations"/>).</summary>
    public static bool TryParseSince(string text, out TimeSpan span) => Protocol.Text.Durations.TryParse(text, out span, out _);
}
