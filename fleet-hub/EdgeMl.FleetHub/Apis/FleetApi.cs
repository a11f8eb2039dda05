using System.Globalization;
using System.Text.Json.Nodes;
using EdgeMl.FleetHub.Alerts;
using EdgeMl.FleetHub.Dashboard;
using EdgeMl.FleetHub.Events;
using EdgeMl.FleetHub.Security;
using EdgeMl.FleetHub.Store;
using static EdgeMl.FleetHub.Apis.QueryValues;

namespace EdgeMl.FleetHub.Apis;

/// <summary>
/// REST (viewer) for the dashboard: fleet counts, the fleet table paged by the store, a device's presence timeline and
/// health over a time range, the alert list, and the live event stream (Server-Sent Events). Every query value is
/// checked here: a bad one is a 400 whose error names the parameter (docs/fleet.md).
/// </summary>
public static class FleetApi
{
    /// <summary>Largest page of the fleet table.</summary>
    public const int MaxPageSize = 500;

    /// <summary>How often an idle event stream gets a comment line (keeps proxies and the browser's connection alive).</summary>
    public static readonly TimeSpan Heartbeat = TimeSpan.FromSeconds(15);

    /// <summary>How often an open event stream checks that its token or session is still valid.</summary>
    public static readonly TimeSpan LoginRecheck = TimeSpan.FromSeconds(5);

    public static void MapFleetApi(this WebApplication app)
    {
        app.MapGet("/api/fleet/summary", (IHubStore store) =>
        {
            var s = store.Summary();
            var f = s.Fleet;
            return TypedResults.Ok(new FleetSummaryView(f.Total, f.Online, f.Offline, f.NeverSeen, f.Unhealthy, f.Drifting, s.Groups, s.Models));
        }).RequireRole(ApiAuth.Viewer);

        app.MapGet("/api/devices/page", IResult (HttpContext http, IHubStore store) =>
        {
            if (PageQuery(http.Request.Query) is not { } parsed) return TypedResults.BadRequest(new ApiError("bad request"));
            if (parsed.Error is not null) return TypedResults.BadRequest(new ApiError(parsed.Error));
            var page = store.QueryDevices(parsed.Query!);
            return TypedResults.Ok(new DevicePageView(page.Total, page.Page, page.PageSize, page.Items.Select(DeviceRowView.Of).ToList()));
        }).RequireRole(ApiAuth.Viewer).Takes("q", "group", "status", "model", "tag", "drift", "sort", "page", "pageSize");

        app.MapGet("/api/devices/{id}/presence", IResult (string id, HttpContext http, IHubStore store, TimeProvider time) =>
        {
            var query = http.Request.Query;
            var now = time.GetUtcNow();
            if (!TryTime(query, "since", now, out var since, out var error) || !TryInt(query, "limit", 1, 10_000, 1000, out var limit, out error))
            {
                return TypedResults.BadRequest(new ApiError(error!));
            }

            if (store.FindDevice(id) is null) return TypedResults.NotFound(new ApiError($"no device '{id}'"));
            return TypedResults.Ok(store.PresenceHistory(id, since ?? now.AddDays(-1), limit));
        }).RequireRole(ApiAuth.Viewer).Takes("limit", "since");

        app.MapGet("/api/alerts", IResult (HttpContext http, IHubStore store, TimeProvider time) =>
        {
            var query = http.Request.Query;
            bool? active = null;
            var (activeText, e1) = Single(query, "active");
            if (e1 is not null) return TypedResults.BadRequest(new ApiError(e1));
            if (activeText is not null)
            {
                if (activeText is not ("true" or "false")) return TypedResults.BadRequest(new ApiError($"active '{Printable(activeText)}' must be true or false"));
                active = activeText == "true";
            }

            var (kind, e2) = Single(query, "kind");
            if (e2 is not null) return TypedResults.BadRequest(new ApiError(e2));
            if (kind is not null && !FleetAlerts.Kinds.Contains(kind))
            {
                return TypedResults.BadRequest(new ApiError($"kind '{Printable(kind)}' is not one of {string.Join(", ", FleetAlerts.Kinds)}"));
            }

            var (device, e3) = Single(query, "device");
            if (e3 is not null) return TypedResults.BadRequest(new ApiError(e3));
            if (device is not null && EdgeMl.Protocol.Wire.DeviceIds.Problem(device) is { } bad) return TypedResults.BadRequest(new ApiError($"device: {bad}"));
            if (!TryInt(query, "limit", 1, 1000, 100, out var limit, out var error) || !TryTime(query, "since", time.GetUtcNow(), out var since, out error))
            {
                return TypedResults.BadRequest(new ApiError(error!));
            }

            return TypedResults.Ok(store.Alerts(new AlertQuery(active, kind, device, limit, since)).Select(AlertView.Of).ToList());
        }).RequireRole(ApiAuth.Viewer).Takes("active", "kind", "device", "since", "limit");

        app.MapGet("/api/events", (HttpContext http, HubEvents events, IHostApplicationLifetime life) => StreamAsync(http, events, life)).RequireRole(ApiAuth.Viewer);
    }

    /// <summary>
    /// <c>GET /api/devices/{id}/health?since=&amp;until=&amp;limit=</c>: with since or until, the reports the device produced in
    /// [since, until) (its own clock), filtered by the store; newest first; at most limit (default 100, at most 10,000).
    /// </summary>
    internal static IResult HealthRange(string id, HttpContext http, IHubStore store, TimeProvider time)
    {
        var query = http.Request.Query;
        var now = time.GetUtcNow();
        if (!TryTime(query, "since", now, out var since, out var error) || !TryTime(query, "until", now, out var until, out error)
                                                                       || !TryInt(query, "limit", 1, 10_000, 100, out var limit, out error))
        {
            return TypedResults.BadRequest(new ApiError(error!));
        }

        if (since is { } s && until is { } u && s >= u) return TypedResults.BadRequest(new ApiError($"since ({s:O}) must be before until ({u:O})"));
        if (store.FindDevice(id) is null) return TypedResults.NotFound(new ApiError($"no device '{id}'"));
        var records = since is null && until is null
            ? store.Records(id, limit, "health").OrderByDescending(r => r.At).ToList()
            : store.RecordsBetween(id, "health", since, until, limit);
        return TypedResults.Ok(records.Select(r => new RecordView(r.Boot, r.Seq, r.Class, r.At, JsonNode.Parse(r.Data))).ToList());
    }

    /// <summary>
    /// <c>GET /api/devices/{id}/health/series?since=&amp;until=&amp;points=</c>: the health reports the device produced in
    /// [since, until) (default: the last hour up to now) downsampled into <c>points</c> buckets (default 500, at most
    /// <see cref="HealthSeries.MaxPoints"/>): per bucket min, max and the newest report's value of each measure
    /// (<see cref="HealthSeries"/>). What the dashboard's charts draw.
    /// </summary>
    internal static IResult HealthSeriesRange(string id, HttpContext http, IHubStore store, TimeProvider time)
    {
        var query = http.Request.Query;
        var now = time.GetUtcNow();
        if (!TryTime(query, "since", now, out var since, out var error) || !TryTime(query, "until", now, out var until, out error)
                                                                       || !TryInt(query, "points", 1, HealthSeries.MaxPoints, 500, out var points, out error))
        {
            return TypedResults.BadRequest(new ApiError(error!));
        }

        var (from, to) = (since ?? (until ?? now).AddHours(-1), until ?? now);
        if (from >= to) return TypedResults.BadRequest(new ApiError($"since ({from:O}) must be before until ({to:O})"));
        if (store.FindDevice(id) is null) return TypedResults.NotFound(new ApiError($"no device '{id}'"));
        var reports = store.RecordsBetween(id, "health", from, to, HealthSeries.MaxReports);
        return TypedResults.Ok(HealthSeries.Of(reports, from, to, points, truncated: reports.Count >= HealthSeries.MaxReports));
    }

    private static async Task StreamAsync(HttpContext http, HubEvents events, IHostApplicationLifetime life)
    {
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers["X-Accel-Buffering"] = "no"; // a reverse proxy passes events on at once
        var reader = events.Subscribe();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted, life.ApplicationStopping);
        try
        {
            await http.Response.WriteAsync("retry: 2000\n: connected\n\n", stop.Token).ConfigureAwait(false);
            await http.Response.Body.FlushAsync(stop.Token).ConfigureAwait(false);
            var checkedAt = Environment.TickCount64;
            while (true)
            {
                // The login is checked again every few seconds: a revoked token or a sign-out ends the stream as it
                // ends every other request (the page's reconnect then gets the 401).
                if (Environment.TickCount64 - checkedAt >= (long)LoginRecheck.TotalMilliseconds)
                {
                    if (!ApiAuth.StillAllowed(http, ApiAuth.Viewer))
                    {
                        await http.Response.WriteAsync($"event: signedout\ndata: {System.Text.Json.JsonSerializer.Serialize(new ApiError("the API token or session of this stream is no longer valid (revoked, expired or signed out)"), System.Text.Json.JsonSerializerOptions.Web)}\n\n", stop.Token).ConfigureAwait(false);
                        break;
                    }

                    checkedAt = Environment.TickCount64;
                }

                using var beat = CancellationTokenSource.CreateLinkedTokenSource(stop.Token);
                beat.CancelAfter(Heartbeat < LoginRecheck ? Heartbeat : LoginRecheck);
                bool more;
                try
                {
                    more = await reader.WaitToReadAsync(beat.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!stop.IsCancellationRequested)
                {
                    await http.Response.WriteAsync(": heartbeat\n\n", stop.Token).ConfigureAwait(false);
                    await http.Response.Body.FlushAsync(stop.Token).ConfigureAwait(false);
                    continue;
                }

                if (!more) break;
                while (reader.TryRead(out var e))
                {
                    await http.Response.WriteAsync($"event: {e.Name}\ndata: {e.Json}\n\n", stop.Token).ConfigureAwait(false);
                }

                await http.Response.Body.FlushAsync(stop.Token).ConfigureAwait(false);
            }
        }
        catch (SlowClientException e)
        {
            // Dropped for falling behind: say so (the page reconnects and reloads what it shows).
            await http.Response.WriteAsync($"event: dropped\ndata: {System.Text.Json.JsonSerializer.Serialize(new ApiError(e.Message))}\n\n", CancellationToken.None).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The client went away, or the hub is shutting down: the stream ends cleanly.
        }
        catch (IOException)
        {
            // The connection broke while writing.
        }
        finally
        {
            events.Unsubscribe(reader);
        }
    }

    private sealed record Parsed(DeviceQuery? Query, string? Error);

    /// <summary>The fleet table's query string (<see cref="DeviceQuery"/>), or the first problem in it, naming the parameter.</summary>
    /// <summary>
    /// The checks <c>/api/devices/page</c> makes of <c>group</c>, <c>model</c> and <c>tag</c>, for <c>GET /api/devices</c>:
    /// each given at most once, not empty, at most 256 characters without control characters, a valid group, NAME or
    /// NAME@VERSION, KEY or KEY=VALUE (<c>status</c>: once; its values are the list's own). Null when all is well.
    /// </summary>
    internal static string? ListFilterProblem(IQueryCollection query)
    {
        foreach (var key in (string[])["group", "status", "model", "tag"])
        {
            var (value, repeated) = Single(query, key);
            if (repeated is not null) return repeated;
            if (value is null) continue;
            if (value.Length == 0) return $"{key} is empty (leave it out for every device)";
            if (value.Length > 256 || value.Any(char.IsControl)) return $"{key} must be at most 256 characters without control characters";
        }

        if (PageQuery(new QueryCollection(query.Where(q => ((string[])["group", "model", "tag"]).Contains(q.Key, StringComparer.OrdinalIgnoreCase))
                .ToDictionary(q => q.Key.ToLowerInvariant(), q => q.Value, StringComparer.OrdinalIgnoreCase))) is { Error: { } error })
        {
            return error;
        }

        return null;
    }

    private static Parsed? PageQuery(IQueryCollection query)
    {
        var values = new Dictionary<string, string?>();
        foreach (var key in (string[])["q", "group", "status", "model", "tag", "drift", "sort"])
        {
            var (value, repeated) = Single(query, key);
            if (repeated is not null) return new Parsed(null, repeated);
            if (value is not null && (value.Length > 256 || value.Any(char.IsControl)))
            {
                return new Parsed(null, $"{key} must be at most 256 characters without control characters");
            }

            values[key] = value is { Length: > 0 } ? value : null;
        }

        if (values["group"] is { } group && DevicesApi.LabelProblem(group, null) is { } groupProblem) return new Parsed(null, groupProblem);
        if (values["status"] is { } status && !DeviceQuery.Statuses.Contains(status))
        {
            return new Parsed(null, $"status '{Printable(status)}' is not one of {string.Join(", ", DeviceQuery.Statuses)}");
        }

        string? model = null, version = null;
        if (values["model"] is { } m)
        {
            if (!Protocol.Text.ModelRefs.TryParse(m, out var parsed, out _, versionOptional: true)) return new Parsed(null, $"model '{Printable(m)}' is not NAME or NAME@VERSION");
            (model, version) = (parsed.Name, parsed.Version.Length > 0 ? parsed.Version : null);
        }

        string? tagKey = null, tagValue = null;
        if (values["tag"] is { } tag)
        {
            var eq = tag.IndexOf('=', StringComparison.Ordinal);
            (tagKey, tagValue) = eq < 0 ? (tag, null) : (tag[..eq], tag[(eq + 1)..]);
            if (DevicesApi.LabelProblem(null, new Dictionary<string, string> { [tagKey] = tagValue ?? "" }) is not null)
            {
                return new Parsed(null, $"tag '{Printable(tag)}' is not KEY or KEY=VALUE (a key is 1-64 of A-Z a-z 0-9 . _ -)");
            }
        }

        if (values["drift"] is { } drift && !DeviceQuery.DriftFilters.Contains(drift))
        {
            return new Parsed(null, $"drift '{Printable(drift)}' is not one of {string.Join(", ", DeviceQuery.DriftFilters)}");
        }

        var sort = values["sort"] ?? "id";
        var descending = sort.StartsWith('-');
        var field = descending ? sort[1..] : sort;
        if (!DeviceQuery.SortFields.Contains(field))
        {
            return new Parsed(null, $"sort '{Printable(sort)}' is not FIELD or -FIELD with FIELD one of {string.Join(", ", DeviceQuery.SortFields)}");
        }

        if (!TryInt(query, "page", 1, 1_000_000, 1, out var page, out var error) || !TryInt(query, "pageSize", 1, MaxPageSize, 50, out var pageSize, out error))
        {
            return new Parsed(null, error);
        }

        return new Parsed(new DeviceQuery(values["q"], values["group"], values["status"], model, version, tagKey, tagValue, values["drift"], field, descending, page, pageSize), null);
    }
}

/// <summary><c>GET /api/fleet/summary</c>: the whole fleet's counts, then per group (devices with a group), then model versions.</summary>
public sealed record FleetSummaryView(
    long Total, long Online, long Offline, long NeverSeen, long Unhealthy, long Drifting, List<FleetCounts> Groups, List<ModelCount> Models);

/// <summary><c>GET /api/devices/page</c>: how many devices match, and this page of them.</summary>
public sealed record DevicePageView(long Total, int Page, int PageSize, List<DeviceRowView> Items);

/// <summary>One row of the fleet table (<see cref="DeviceRow"/>).</summary>
public sealed record DeviceRowView(
    string Id, string? Group, IReadOnlyDictionary<string, string> Tags, string Presence, DateTimeOffset? LastSeen, string? Model, string? Version, double? P99Ms,
    double? CpuPercent, double? MemoryPercent, double? TemperatureC, long? OutboxDepth, long? OutboxDropped, string? DriftStatus, bool? Healthy, string? Problems,
    string Enrollment)
{
    public static DeviceRowView Of(DeviceRow r) => new(
        r.Id, r.Group, r.Tags, r.Presence, r.LastSeen, r.Model, r.Version, r.P99Ms, r.CpuPercent, r.MemoryPercent, r.TemperatureC, r.OutboxDepth, r.OutboxDropped,
        r.DriftStatus, r.Healthy, r.Problems, r.Enrollment);
}
