using System.Text.Json.Nodes;
using EdgeMl.FleetHub.Broker;
using EdgeMl.FleetHub.Security;
using EdgeMl.FleetHub.Store;
using EdgeMl.Protocol.Enrollment;
using EdgeMl.Protocol.Text;

namespace EdgeMl.FleetHub.Apis;

/// <summary>
/// REST: the device registry (viewer: list with filters, show, telemetry and health history; operator:
/// enroll, revoke) and the device's own enrollment call.
/// </summary>
public static partial class DevicesApi
{
    public static void MapDevicesApi(this WebApplication app)
    {
        app.MapGet("/api/ingest", (Ingest.TelemetryIngest ingest) => TypedResults.Ok(ingest.Stats())).RequireRole(ApiAuth.Viewer);
        app.MapGet("/api/ingest/quarantine", IResult (HttpContext http, IHubStore store) =>
        {
            var query = http.Request.Query;
            if (!QueryValues.TryText(query, "device", 128, out var device, out var error) || !QueryValues.TryInt(query, "limit", 1, 1000, 100, out var limit, out error))
            {
                return TypedResults.BadRequest(new ApiError(error!));
            }

            return TypedResults.Ok(store.Quarantined(device, limit)
                .Select(q => new QuarantineView(q.Id, q.Device, q.At, q.Reason, q.Records, JsonNode.Parse(q.RecordsJson))).ToList());
        }).RequireRole(ApiAuth.Viewer).Takes("device", "limit");

        var api = app.MapGroup("/api/devices");
        api.MapGet("/", IResult (HttpContext http, IHubStore store) =>
        {
            if (FleetApi.ListFilterProblem(http.Request.Query) is { } problem) return TypedResults.BadRequest(new ApiError(problem));
            string? group = http.Request.Query["group"], status = http.Request.Query["status"], model = http.Request.Query["model"], tag = http.Request.Query["tag"];
            if (status is not null && !ListStatuses.Contains(status))
            {
                return TypedResults.BadRequest(new ApiError($"status '{Printable(status)}' is not one of {string.Join(", ", ListStatuses)}"));
            }

            return TypedResults.Ok(store.Devices().Select(d => Summary(d, withHealth: false))
                .Where(d => group is null || d.Group == group)
                .Where(d => status is null || d.Presence == status || d.Enrollment == status)
                .Where(d => model is null || d.Model == model || $"{d.Model}@{d.ModelVersion}" == model)
                .Where(d => tag is null || HasTag(d, tag))
                .OrderBy(d => d.Id, StringComparer.Ordinal).ToList());
        }).RequireRole(ApiAuth.Viewer).Takes("group", "status", "model", "tag");
        api.MapGet("/{id}", IResult (string id, IHubStore store, Ingest.TelemetryIngest ingest, IDeviceConnections connections) =>
            store.FindDevice(id) is { } d
                ? TypedResults.Ok(Summary(d, withHealth: true) with { Rejected = ingest.DeviceRejections(id), BrokerLogin = connections.LoginState(id, d.Enrollment) })
                : NoDevice(id)).RequireRole(ApiAuth.Viewer);
        api.MapGet("/{id}/telemetry", IResult (string id, HttpContext http, IHubStore store, TimeProvider time) => History(store, id, http.Request.Query, "telemetry", time))
            .RequireRole(ApiAuth.Viewer).Takes(HistoryParameters);
        api.MapGet("/{id}/records", IResult (string id, HttpContext http, IHubStore store, TimeProvider time) =>
        {
            if (!QueryValues.TryText(http.Request.Query, "class", 64, out var recordClass, out var error)) return TypedResults.BadRequest(new ApiError(error!));
            if (recordClass is not (null or "telemetry" or "health" or "drift" or "alert"))
            {
                return TypedResults.BadRequest(new ApiError($"class '{Printable(recordClass)}' is not one of telemetry, health, drift, alert (or leave it out for every class)"));
            }

            return History(store, id, http.Request.Query, recordClass, time);
        }).RequireRole(ApiAuth.Viewer).Takes(["class", .. HistoryParameters]);
        api.MapGet("/{id}/alerts", IResult (string id, HttpContext http, IHubStore store, TimeProvider time) => History(store, id, http.Request.Query, "alert", time))
            .RequireRole(ApiAuth.Viewer).Takes(HistoryParameters);
        api.MapGet("/{id}/health", IResult (string id, HttpContext http, IHubStore store, TimeProvider time) => FleetApi.HealthRange(id, http, store, time))
            .RequireRole(ApiAuth.Viewer).Takes(HistoryParameters);
        api.MapGet("/{id}/health/series", IResult (string id, HttpContext http, IHubStore store, TimeProvider time) => FleetApi.HealthSeriesRange(id, http, store, time))
            .RequireRole(ApiAuth.Viewer).Takes("points", "since", "until");

        api.MapPost("/", IResult (EnrollRequest request, IHubStore store, HubSettings settings, TimeProvider time) =>
        {
            if (EdgeMl.Protocol.Wire.DeviceIds.Problem(request.Id) is { } problem) return TypedResults.BadRequest(new ApiError(problem));
            if (LabelProblem(request.Group, request.Tags) is { } labels) return TypedResults.BadRequest(new ApiError(labels));

            if (request.ExpiresHours is { } h && (!double.IsFinite(h) || h <= 0 || h > 24 * 365))
            {
                return TypedResults.BadRequest(new ApiError($"expiresHours {h} must be more than 0 and at most 8760 (a year)"));
            }

            var now = time.GetUtcNow();
            var token = Secrets.New("enr_");
            var expires = now.AddHours(request.ExpiresHours ?? settings.EnrollTokenHours);
            try
            {
                store.CreateEnrollment(request.Id!, request.Group, request.Tags ?? [], Secrets.Hash(token), expires, now);
            }
            catch (InvalidOperationException e)
            {
                return TypedResults.Conflict(new ApiError(e.Message));
            }

            return TypedResults.Ok(new EnrollTicket(request.Id!, token, expires));
        }).RequireRole(ApiAuth.Operator);

        // The operator points a device at a registered model: retained desired state on its topic.
        api.MapPost("/{id}/desired", async Task<IResult> (string id, DesiredRequest request, IHubStore store, Rollouts.RolloutEngine engine, HttpContext http, TimeProvider time) =>
        {
            if (store.FindDevice(id) is null) return NoDevice(id);
            if (!ModelRefs.TryParse(request.Model, out var model, out var error)) return TypedResults.BadRequest(new ApiError($"model {error}"));
            if (request.Problem() is { } bounds) return TypedResults.BadRequest(new ApiError(bounds));
            var (name, version) = (model.Name, model.Version);
            if (store.FindModel(name, version) is not { } m) return TypedResults.NotFound(new ApiError($"no model {name}@{version} in the registry (edgeml model push)"));
            var desired = new EdgeMl.Protocol.Packages.DesiredModel
            {
                Name = m.Name, Version = m.Version, Sha256 = m.PackageSha256, SizeBytes = m.SizeBytes, Url = $"/api/models/{Uri.EscapeDataString(m.Name)}/{Uri.EscapeDataString(m.Version)}/package",
                ShadowSeconds = request.ShadowSeconds ?? 0, WatchSeconds = request.WatchSeconds, MaxLatencyRatio = request.MaxLatencyRatio, MaxErrorRate = request.MaxErrorRate,
            };
            await engine.PublishDesiredAsync(id, desired).ConfigureAwait(false);
            store.AddAudit(new AuditEntry(time.GetUtcNow(), ApiAuth.Actor(http, store), "device.desired", $"model {m.Name}@{m.Version}", "set directly (no rollout)", id));
            return TypedResults.Ok(Summary(store.FindDevice(id)!, withHealth: false));
        }).RequireRole(ApiAuth.Operator);

        api.MapPost("/{id}/revoke", async Task<IResult> (string id, IHubStore store, IDeviceConnections connections, TimeProvider time) =>
        {
            if (!store.Revoke(id, time.GetUtcNow())) return NoDevice(id);
            try
            {
                await connections.DisconnectAsync(id).ConfigureAwait(false);
            }
            catch (BrokerIdentityException e)
            {
                // The registry has it revoked (the hub drops its messages), but the broker still lets it in: say so, so it is retried.
                return Results.Json(new ApiError($"'{id}' is revoked in the registry, but the broker still accepts its login: {e.Message}; run the revoke again"),
                    statusCode: StatusCodes.Status502BadGateway);
            }

            return TypedResults.Ok(Summary(store.FindDevice(id)!, withHealth: false));
        }).RequireRole(ApiAuth.Operator);

        // The device's side of enrollment: the one-time token is the credential, so no API token here.
        app.MapPost("/api/enroll", async Task<IResult> (EnrollmentClaim request, IHubStore store, HubSettings settings, IDeviceConnections connections, TimeProvider time) =>
        {
            var signingKeys = settings.SigningKeyPems(); // read before the one-time token is used up
            var password = Secrets.New("dev_");
            var id = store.ClaimEnrollment(Secrets.Hash(request.Token ?? ""), Secrets.Hash(password), time.GetUtcNow());
            if (id is null)
            {
                return Results.Json(new ApiError("enrollment token unknown, already used or expired: ask the operator for a new one (`edgeml devices enroll ID`)"),
                    statusCode: StatusCodes.Status403Forbidden);
            }

            try
            {
                await connections.GrantAsync(id, password).ConfigureAwait(false);
            }
            catch (BrokerIdentityException e)
            {
                // The token is used up; the operator issues a new one once the broker is fixed.
                return Results.Json(new ApiError($"the broker did not take this device's login ({e.Message}): ask the operator for a new token (`edgeml devices enroll {id}`)"),
                    statusCode: StatusCodes.Status502BadGateway);
            }

            // With --Broker the device uses the external broker only: the embedded broker's ports (which do not listen then)
            // are left out, so that no device is pointed at them. A port of 0 (none) is left out as well.
            var external = settings.Broker.Length > 0;
            return TypedResults.Ok(new DeviceCredentials
            {
                DeviceId = id, Password = password, Broker = external ? settings.Broker : null,
                MqttPort = !external && settings.MqttPort > 0 ? settings.MqttPort : null, MqttTlsPort = !external && settings.MqttTlsPort > 0 ? settings.MqttTlsPort : null,
                SigningKeys = signingKeys,
            });
        });
    }

    /// <summary>What the history calls (telemetry, records, alerts, health) take: <c>limit</c>, <c>since</c>, <c>until</c>.</summary>
    private static readonly string[] HistoryParameters = ["limit", "since", "until"];

    /// <summary>
    /// The device's records of <paramref name="recordClass"/> (null: every class), newest first by the device's own time
    /// <c>at</c>, at most <c>?limit=</c> (1 to 10,000, default 100). With <c>?since=</c> and/or <c>?until=</c> (times as
    /// <see cref="QueryValues.TryTime"/> reads them) only those the device produced in [since, until), chosen by the store
    /// by <c>at</c>; without, the newest stored (as stored: a batch resent after a reconnect may arrive after a newer one).
    /// A malformed value, or a since not before until, is a 400 naming it.
    /// </summary>
    private static IResult History(IHubStore store, string id, IQueryCollection query, string? recordClass, TimeProvider time)
    {
        var now = time.GetUtcNow();
        if (!QueryValues.TryInt(query, "limit", 1, 10_000, 100, out var limit, out var error) || !QueryValues.TryTime(query, "since", now, out var since, out error)
                                                                                              || !QueryValues.TryTime(query, "until", now, out var until, out error))
        {
            return TypedResults.BadRequest(new ApiError(error!));
        }

        if (since is { } s && until is { } u && s >= u) return TypedResults.BadRequest(new ApiError($"since ({s:O}) must be before until ({u:O})"));
        if (store.FindDevice(id) is null) return NoDevice(id);
        var records = since is null && until is null
            ? store.Records(id, limit, recordClass).OrderByDescending(r => r.At).ToList()
            : store.RecordsBetween(id, recordClass, since, until, limit);
        return TypedResults.Ok(records.Select(r => new RecordView(r.Boot, r.Seq, r.Class, r.At, JsonNode.Parse(r.Data))).ToList());
    }

    /// <summary>
    /// What <c>GET /api/devices?status=</c> filters by: a presence (<see cref="FleetPresence"/>: the same words as the fleet
    /// table) or an enrollment state.
    /// </summary>
    public static readonly IReadOnlyList<string> ListStatuses =
        [FleetPresence.Online, FleetPresence.Offline, FleetPresence.NeverSeen, "pending", "enrolled", "revoked", "unregistered"];

    private static IResult NoDevice(string id) => TypedResults.NotFound(new ApiError($"no device '{id}'"));

    private static bool HasTag(DeviceView d, string tag)
    {
        var eq = tag.IndexOf('=', StringComparison.Ordinal);
        return eq < 0 ? d.Tags.ContainsKey(tag) : d.Tags.TryGetValue(tag[..eq], out var v) && v == tag[(eq + 1)..];
    }

    /// <summary>The API's view of a device; its presence in the fleet table's words (<see cref="FleetPresence.Of"/>: <c>neverSeen</c> until the hub hears from it).</summary>
    private static DeviceView Summary(DeviceEntry d, bool withHealth) => new(
        d.Id, d.Group, d.Tags, d.Enrollment, d.EnrolledAt, d.RevokedAt, FleetPresence.Of(d.Presence, d.LastSeen), d.Boot, d.LastSeen, d.Records,
        d.Model, d.ModelVersion, d.LatencyP99Ms, d.HealthAt, withHealth && d.HealthJson is { } h ? JsonNode.Parse(h) : null, d.DriftStatus, d.DriftAt,
        d.Desired, d.ReportedJson is { } rep ? JsonNode.Parse(rep) : null);

    /// <summary>
    /// A group is 1–64 of A-Z a-z 0-9 . _ - (it ends up in rollout targets, filters and the dashboard); at most 32 tags,
    /// keys like a group, values at most 256 characters without control characters. Null when they are fine.
    /// </summary>
    internal static string? LabelProblem(string? group, IReadOnlyDictionary<string, string>? tags)
    {
        if (group is not null && !IsLabel(group, 64)) return $"group '{Printable(group)}' must be 1-64 of A-Z a-z 0-9 . _ -";
        if (tags is null) return null;
        if (tags.Count > 32) return $"at most 32 tags ({tags.Count} given)";
        foreach (var (key, value) in tags)
        {
            if (!IsLabel(key, 64)) return $"tag key '{Printable(key)}' must be 1-64 of A-Z a-z 0-9 . _ -";
            if (value is null) return $"tags.{Printable(key)} is null: a tag's value is a string (\"\" for a tag without a value)";
            if (value.Length > 256 || value.Any(char.IsControl)) return $"tag '{key}': the value must be at most 256 characters without control characters";
        }

        return null;
    }

    private static bool IsLabel(string s, int max) => s.Length is > 0 && s.Length <= max && s.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');

    private static string Printable(string s) => new string(s.Take(40).Select(c => char.IsControl(c) ? '?' : c).ToArray()) + (s.Length > 40 ? "…" : "");
}

/// <summary>Points one device at a model directly (no rollout): activate at once, optionally after a shadow run, with the device-side watch bounds.</summary>
public sealed record DesiredRequest(string? Model, int? ShadowSeconds = null, int? WatchSeconds = null, double? MaxLatencyRatio = null, double? MaxErrorRate = null)
{
    /// <summary>Most seconds a shadow run or a watch period may last (a week).</summary>
    public const int MaxSeconds = 7 * 24 * 3600;

    /// <summary>
    /// What is out of range, naming the field and the allowed range, or null: shadowSeconds and watchSeconds 0 to a week,
    /// maxLatencyRatio 0 (no bound) to 1000, maxErrorRate 0 to 1.
    /// </summary>
    public string? Problem()
    {
        if (ShadowSeconds is < 0 or > MaxSeconds) return $"shadowSeconds {ShadowSeconds} is not from 0 to {MaxSeconds} (a week)";
        if (WatchSeconds is < 0 or > MaxSeconds) return $"watchSeconds {WatchSeconds} is not from 0 to {MaxSeconds} (a week)";
        if (MaxLatencyRatio is { } ratio && (!double.IsFinite(ratio) || ratio < 0 || ratio > 1000)) return $"maxLatencyRatio {ratio} is not from 0 (no bound) to 1000";
        if (MaxErrorRate is { } rate && (!double.IsFinite(rate) || rate < 0 || rate > 1)) return $"maxErrorRate {rate} is not from 0 to 1";
        return null;
    }
}

public sealed record EnrollRequest(string? Id, string? Group, Dictionary<string, string>? Tags, double? ExpiresHours);

public sealed record EnrollTicket(string Id, string Token, DateTimeOffset Expires);

public sealed record DeviceView(
    string Id, string? Group, IReadOnlyDictionary<string, string> Tags, string Enrollment, DateTimeOffset? EnrolledAt, DateTimeOffset? RevokedAt,
    string Presence, string? Boot, DateTimeOffset? LastSeen, long Records, string? Model, string? ModelVersion, double? LatencyP99Ms, DateTimeOffset? HealthAt, JsonNode? Health,
    string? Drift = null, DateTimeOffset? DriftAt = null, string? Desired = null, JsonNode? Reported = null, IReadOnlyDictionary<string, long>? Rejected = null,
    string? BrokerLogin = null);

/// <summary>A quarantined batch as the API shows it (<c>GET /api/ingest/quarantine</c>).</summary>
public sealed record QuarantineView(long Id, string Device, DateTimeOffset At, string Reason, int Records, JsonNode? Data);

public sealed record RecordView(string Boot, long Seq, string Class, long At, JsonNode? Data);
