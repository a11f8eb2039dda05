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
        app.MapGet("/api/drift", IResult (HttpContext http, IHubStore store, RegistryBaselines baselines, TimeProvider time) =>
        {
            var query = http.Request.Query;
            // since: a time as every endpoint takes it (QueryValues.TryTime: 2026-11-30T06:00:00Z, a day, or 24h back from now);
            // one in the future is a time too (no windows ended after it yet).
            var now = time.GetUtcNow();
            if (!QueryValues.TryText(query, "device", 128, out var device, out var bad) || !QueryValues.TryText(query, "group", 64, out var group, out bad)
                                                                                     || !QueryValues.TryTime(query, "since", now, out var since, out bad))
            {
                return TypedResults.BadRequest(new ApiError(bad!));
            }

            if (device is not null && group is not null) return TypedResults.BadRequest(new ApiError("give device or group, not both (neither: the whole fleet)"));
            var from = since ?? now.AddHours(-24);
            if (device is not null)
            {
                return store.FindDevice(device) is null
                    ? TypedResults.NotFound(new ApiError($"no device '{device}'"))
                    : TypedResults.Ok(DriftAlerts.DeviceDrift(store, baselines, device, from));
            }

            var devices = store.Devices().Where(d => group is null || d.Group == group).Select(d => d.Id).ToList();
            if (group is not null && devices.Count == 0) return TypedResults.NotFound(new ApiError($"no device in group '{group}'"));
            return TypedResults.Ok(DriftAnalysis.Analyze(group is null ? "fleet" : $"group {group}", DriftAlerts.Windows(store, devices, from), baselines.For));
        }).RequireRole(ApiAuth.Viewer).Takes("device", "group", "since");

        // A device's drift over time: the range cut into equal buckets, each tested like GET /api/drift tests a range.
        app.MapGet("/api/drift/series", IResult (HttpContext http, IHubStore store, RegistryBaselines baselines, TimeProvider time) =>
        {
            var query = http.Request.Query;
            var now = time.GetUtcNow();
            if (!QueryValues.TryText(query, "device", 128, out var device, out var bad) || !QueryValues.TryTime(query, "since", now, out var since, out bad)
                                                                                     || !QueryValues.TryInt(query, "buckets", 1, MaxBuckets, 24, out var buckets, out bad))
            {
                return TypedResults.BadRequest(new ApiError(bad!));
            }

            if (device is null) return TypedResults.BadRequest(new ApiError("device: which device? (/api/drift/series?device=ID)"));
            // The range [since, now) is cut into buckets: it must not be empty (a since in the future) nor longer than 400 days.
            var span = now - (since ?? now.AddHours(-24));
            if (span < TimeSpan.FromSeconds(1)) return TypedResults.BadRequest(new ApiError($"since ({since:O}) must be before now ({now:O}): the series runs from since to now"));
            if (span > TimeSpan.FromDays(400)) return TypedResults.BadRequest(new ApiError($"since ({since:O}) is more than 400 days back"));
            if (store.FindDevice(device) is null) return TypedResults.NotFound(new ApiError($"no device '{device}'"));
            return TypedResults.Ok(Series(store, baselines, device, now, span, buckets));
        }).RequireRole(ApiAuth.Viewer).Takes("device", "since", "buckets");
    }

    /// <summary>Most buckets a drift series is cut into.</summary>
    public const int MaxBuckets = 96;

    /// <summary>
    /// A device's drift over <paramref name="span"/> before <paramref name="now"/>, in <paramref name="count"/> equal buckets
    /// (oldest first). Each bucket holds the drift windows that ended in it, tested against the registry's baseline as
    /// <see cref="DriftAnalysis.Analyze"/> does (a bucket without windows: status "no data", no features). Per feature:
    /// its status and the PSI, KS and Wasserstein statistics (null where the test did not run).
    /// </summary>
    public static DriftSeries Series(IHubStore store, RegistryBaselines baselines, string device, DateTimeOffset now, TimeSpan span, int count)
    {
        var from = now - span;
        var windows = DriftAlerts.Windows(store, [device], from);
        var width = span / count;
        var result = new List<DriftBucket>(count);
        for (var i = 0; i < count; i++)
        {
            var start = from + (width * i);
            var end = i == count - 1 ? now : from + (width * (i + 1));
            var inside = windows.Where(w => w.Report.To >= start && w.Report.To < end || (i == count - 1 && w.Report.To >= start)).ToList();
            var view = DriftAnalysis.Analyze($"device {device}", inside, baselines.For);
            result.Add(new DriftBucket(start, end, view.Status, view.Windows, view.Features.Select(f => new DriftPoint(
                f.Feature, f.Status, Stat(f, "psi"), Stat(f, "ks"), Stat(f, "wasserstein"))).ToList()));
        }

        return new DriftSeries(device, result);

        static double? Stat(FeatureDriftView f, string test) =>
            f.Tests.FirstOrDefault(t => t.Test.StartsWith(test, StringComparison.OrdinalIgnoreCase)) is { } t ? t.Statistic : null;
    }

    /// <summary><c>30m</c>, <c>24h</c>, <c>7d</c>, <c>90s</c> (<see cref="Protocol.Text.Durations"/>).</summary>
    public static bool TryParseSince(string text, out TimeSpan span) => Protocol.Text.Durations.TryParse(text, out span, out _);
}

/// <summary><c>GET /api/drift/series</c>: a device's drift per bucket of time, oldest first.</summary>
public sealed record DriftSeries(string Device, List<DriftBucket> Buckets);

/// <summary>One bucket: its time range, overall status and how many drift windows it holds, and each feature's figures.</summary>
public sealed record DriftBucket(DateTimeOffset From, DateTimeOffset Until, string Status, int Windows, List<DriftPoint> Features);

/// <summary>A feature in a bucket: its status and the PSI, KS and Wasserstein statistics (null: the test did not run).</summary>
public sealed record DriftPoint(string Feature, string Status, double? Psi, double? Ks, double? Wasserstein);
