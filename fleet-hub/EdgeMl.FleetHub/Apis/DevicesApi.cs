using EdgeMl.FleetHub.Store;
using System.Text.Json.Nodes;
using LiteDB;

namespace EdgeMl.FleetHub.Apis;

/// <summary>REST: the device registry as the hub knows it so far (presence, last seen, records stored).</summary>
public static class DevicesApi
{
    public static void MapDevicesApi(this WebApplication app)
    {
        app.MapGet("/api/ingest", (Ingest.TelemetryIngest ingest) => TypedResults.Ok(new IngestView(ingest.Malformed)));
        var api = app.MapGroup("/api/devices");
        api.MapGet("/", (HubStore store) => TypedResults.Ok(store.Devices().Select(Summary).ToList()));
        api.MapGet("/{id}", IResult (string id, HubStore store) =>
            store.FindDevice(id) is { } d ? TypedResults.Ok(Summary(d)) : TypedResults.NotFound(new { error = $"no device '{id}'" }));
        api.MapGet("/{id}/telemetry", (string id, int? limit, HubStore store) =>
            TypedResults.Ok(store.Telemetry(id, Math.Clamp(limit ?? 100, 1, 10_000)).Select(r => new RecordView(
                r["boot"].AsString, r["seq"].AsInt64, r["class"].AsString, r["at"].AsInt64, JsonNode.Parse(r["data"].AsString))).ToList()));
    }

    private static DeviceView Summary(BsonDocument d) => new(
        d["_id"].AsString, d["presence"].AsString, d.TryGetValue("boot", out var b) ? b.AsString : null,
        d["records"].AsInt64, d["lastSeen"].AsInt64 == 0 ? null : DateTimeOffset.FromUnixTimeMilliseconds(d["lastSeen"].AsInt64));
}

public sealed record DeviceView(string Id, string Presence, string? Boot, long Records, DateTimeOffset? LastSeen);

public sealed record IngestView(long Malformed);

public sealed record RecordView(string Boot, long Seq, string Class, long At, JsonNode? Data);
