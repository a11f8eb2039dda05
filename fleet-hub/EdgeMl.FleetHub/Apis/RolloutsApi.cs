using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeMl.FleetHub.Rollouts;
using EdgeMl.FleetHub.Security;
using EdgeMl.FleetHub.Store;
using EdgeMl.Protocol.Json;
using EdgeMl.Protocol.Packages;
using EdgeMl.Protocol.Text;

namespace EdgeMl.FleetHub.Apis;

/// <summary>Rollouts (operator: start, pause, resume, abort, rollback a group; viewer: status) and the audit trail.</summary>
public static class RolloutsApi
{
    public static void MapRolloutsApi(this WebApplication app)
    {
        var api = app.MapGroup("/api/rollouts");
        api.MapGet("/", (RolloutEngine engine) => TypedResults.Ok(engine.All())).RequireRole(ApiAuth.Viewer);
        api.MapGet("/{id}", IResult (string id, RolloutEngine engine) =>
            engine.Find(id) is { } r ? TypedResults.Ok(r) : TypedResults.NotFound(new ApiError($"no rollout {id}"))).RequireRole(ApiAuth.Viewer);

        api.MapPost("/", async Task<IResult> (RolloutRequest request, HttpContext http, IHubStore store, RolloutEngine engine, TimeProvider time) =>
        {
            Rollout r;
            try
            {
                r = Build(request, store, engine, time);
            }
            catch (FormatException e)
            {
                return TypedResults.BadRequest(new ApiError(e.Message));
            }
            catch (KeyNotFoundException e)
            {
                return TypedResults.NotFound(new ApiError(e.Message));
            }
            catch (InvalidOperationException e)
            {
                return TypedResults.Conflict(new ApiError(e.Message));
            }

            r.CreatedBy = ApiAuth.Actor(http, store);
            await engine.StartAsync(r, r.CreatedBy).ConfigureAwait(false);
            return TypedResults.Created($"/api/rollouts/{r.Id}", r);
        }).RequireRole(ApiAuth.Operator);

        foreach (var action in new[] { "pause", "resume", "abort" })
        {
            api.MapPost($"/{{id}}/{action}", async Task<IResult> (string id, HttpContext http, IHubStore store, RolloutEngine engine) =>
            {
                var (r, error) = await engine.ControlAsync(id, action, ApiAuth.Actor(http, store)).ConfigureAwait(false);
                return r is null ? TypedResults.NotFound(new ApiError(error!)) : error is not null ? TypedResults.Conflict(new ApiError(error)) : TypedResults.Ok(r);
            }).RequireRole(ApiAuth.Operator);
        }

        app.MapPost("/api/rollback", async Task<IResult> (RollbackRequest request, HttpContext http, IHubStore store, RolloutEngine engine) =>
        {
            if (string.IsNullOrWhiteSpace(request.Group)) return TypedResults.BadRequest(new ApiError("rollback needs a group"));
            if (!store.Devices().Any(d => d.Group == request.Group)) return TypedResults.NotFound(new ApiError($"no device in group '{request.Group}'"));
            var sent = await engine.RollbackGroupAsync(request.Group, ApiAuth.Actor(http, store)).ConfigureAwait(false);
            return TypedResults.Ok(sent.Select(s => new RollbackSent(s.Device, s.To)).ToList());
        }).RequireRole(ApiAuth.Operator);

        app.MapGet("/api/audit", IResult (HttpContext http, IHubStore store, TimeProvider time) =>
        {
            var query = http.Request.Query;
            if (!QueryValues.TryTime(query, "since", time.GetUtcNow(), out var since, out var bad) || !QueryValues.TryText(query, "action", 64, out var action, out bad)
                || !QueryValues.TryText(query, "device", 128, out var device, out bad) || !QueryValues.TryText(query, "subject", 256, out var subject, out bad)
                || !QueryValues.TryChoice(query, "format", ["json", "csv"], "json", out var format, out bad))
            {
                return TypedResults.BadRequest(new ApiError(bad!));
            }

            var entries = store.Audit(new AuditQuery(since, action, device, subject));
            if (format != "csv") return TypedResults.Ok(entries);
            var csv = new StringBuilder("at,actor,action,subject,device,details\n");
            foreach (var e in entries)
            {
                csv.Append(CultureInfo.InvariantCulture, $"{e.At:O},{Csv(e.Actor)},{Csv(e.Action)},{Csv(e.Subject)},{Csv(e.Device ?? "")},{Csv(e.Details)}\n");
            }

            return Results.Text(csv.ToString(), "text/csv");
        }).RequireRole(ApiAuth.Viewer).Takes("since", "action", "device", "subject", "format");
    }

    private static string Csv(string s) => s.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? $"\"{s.Replace("\"", "\"\"", StringComparison.Ordinal)}\"" : s;

    private static Rollout Build(RolloutRequest q, IHubStore store, RolloutEngine engine, TimeProvider time)
    {
        var (name, version) = ModelRefs.Parse(q.Model);
        if (q.Gates?.Any(g => g is null) == true) throw new FormatException("gates: a gate is null");
        if (q.Devices?.Any(d => string.IsNullOrWhiteSpace(d)) == true) throw new FormatException("devices: a device id is null or empty");
        var m = store.FindModel(name, version) ?? throw new KeyNotFoundException($"no model {name}@{version} in the registry (edgeml model push)");
        var all = store.Devices().Where(d => d.Enrollment is "enrolled" or "unregistered").ToDictionary(d => d.Id);
        List<DeviceEntry> targets;
        string target;
        if (q.Devices is { Count: > 0 })
        {
            var unknown = q.Devices.Where(id => !all.ContainsKey(id)).ToList();
            if (unknown.Count > 0) throw new KeyNotFoundException($"unknown or revoked device(s): {string.Join(", ", unknown)}");
            targets = q.Devices.Distinct().Select(id => all[id]).ToList();
            target = $"devices:{string.Join(',', q.Devices)}";
        }
        else if (!string.IsNullOrWhiteSpace(q.Group))
        {
            targets = all.Values.Where(d => d.Group == q.Group).ToList();
            if (targets.Count == 0) throw new KeyNotFoundException($"no enrolled device in group '{q.Group}'");
            target = $"group:{q.Group}";
        }
        else
        {
            throw new FormatException("a rollout needs --to GROUP or --devices ID,…");
        }

        var busy = engine.All().Where(r => r.Active).SelectMany(r => r.Devices.Select(d => (r.Id, d.Id))).Where(p => targets.Any(t => t.Id == p.Item2)).ToList();
        if (busy.Count > 0) throw new InvalidOperationException($"device(s) already in an active rollout: {string.Join(", ", busy.Select(b => $"{b.Item2} ({b.Item1})"))}; pause or abort it first");

        var now = time.GetUtcNow();
        var r = new Rollout
        {
            Id = $"r-{now:yyyyMMdd-HHmmss}-{Guid.NewGuid().ToString("N")[..4]}",
            Model = m.Name, Version = m.Version, Sha256 = m.PackageSha256, SizeBytes = m.SizeBytes,
            Url = $"/api/models/{Uri.EscapeDataString(m.Name)}/{Uri.EscapeDataString(m.Version)}/package",
            Target = target, Waves = Rollout.ParseWaves(q.Waves ?? "100"), Gates = (q.Gates ?? []).Select(Gate.Parse).ToList(),
            SoakSeconds = Seconds(q.Soak, "soak", 0), WatchSeconds = Seconds(q.Watch, "watch", 30), OfflineTimeoutSeconds = Seconds(q.OfflineTimeout, "offline-timeout", 600),
            CreatedAt = now,
        };
        r.AssignWaves(targets.Select(d => (d.Id, From(d), FromSha(d, store))));
        return r;
    }

    /// <summary>What the device runs now: its last report, else its last health.</summary>
    private static string? From(DeviceEntry d)
    {
        if (d.ReportedJson is not null)
        {
            try
            {
                if (JsonSerializer.Deserialize(d.ReportedJson, ProtocolJsonContext.Default.ReportedState)?.Active is { } a) return a;
            }
            catch (JsonException)
            {
            }
        }

        return d.Model is null ? null : $"{d.Model}@{d.ModelVersion}";
    }

    private static string? FromSha(DeviceEntry d, IHubStore store)
    {
        var from = From(d);
        return ModelRefs.TryParse(from, out var m, out _) ? store.FindModel(m.Name, m.Version)?.PackageSha256 : null;
    }

    /// <summary>"90", "90s", "10m", "1h" → seconds (<see cref="Protocol.Text.Durations"/>).</summary>
    public static int Seconds(string? text, string what, int fallback)
    {
        if (string.IsNullOrWhiteSpace(text)) return fallback;
        return Protocol.Text.Durations.TryParse(text, out var span, out var error, allowZero: true)
            ? (int)Math.Round(span.TotalSeconds)
            : throw new FormatException($"{what}: {error}");
    }
}

public sealed record RolloutRequest(string? Model, string? Group, List<string>? Devices, string? Waves, List<string>? Gates, string? Soak, string? Watch, string? OfflineTimeout);

public sealed record RollbackRequest(string? Group);

public sealed record RollbackSent(string Device, string To);
