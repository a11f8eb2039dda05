using System.Text.Json;
using EdgeMl.Protocol.Health;
using EdgeMl.Protocol.Json;

namespace EdgeMl.FleetHub.Store;

/// <summary>
/// What the fleet table needs from a device's newest health report (<see cref="HealthReport"/>), kept as columns so
/// that filters and sorting never parse JSON: CPU, memory, temperature, outbox depth and drops, and whether the
/// device is healthy.
/// <para>
/// <b>Unhealthy</b> means the newest report names a problem: a sensor <c>failing</c> or <c>misconfigured</c>; the
/// outbox's disk full or its store failing; a prediction sink whose disk is full; records dropped from the outbox, or
/// windows the model failed on, since the previous report (both are counters the agent keeps; a counter that went down,
/// after an agent restart, counts as no new ones). A sensor whose replay <c>ended</c> is not a problem. The problems are
/// kept as one line (<see cref="Problems"/>).
/// </para>
/// </summary>
public sealed record HealthDigest(
    double? CpuPercent, double? MemoryPercent, double? TemperatureC, long? OutboxDepth, long? OutboxDropped, long? InferenceErrors, string? Problems)
{
    public bool Healthy => Problems is null;

    /// <summary>
    /// Digests <paramref name="json"/> (a health report as stored); <paramref name="previousDropped"/> and
    /// <paramref name="previousInferenceErrors"/> are the counters of the report before it (null: none). Null when the
    /// JSON is not a health report (it was validated at ingest, so only for records of an older hub).
    /// </summary>
    public static HealthDigest? Of(string json, long? previousDropped, long? previousInferenceErrors)
    {
        HealthReport? h;
        try
        {
            h = JsonSerializer.Deserialize(json, ProtocolJsonContext.Default.HealthReport);
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException)
        {
            return null;
        }

        if (h is null) return null;
        var problems = new List<string>();
        foreach (var s in h.Sensors ?? [])
        {
            if (s?.State is "failing" or "misconfigured") problems.Add($"sensor {s.Name} {s.State}");
        }

        long? dropped = null;
        long? depth = null;
        if (h.Outbox is { } o)
        {
            depth = o.Depth?.Values.Sum() ?? 0;
            dropped = o.Dropped?.Values.Sum() ?? 0;
            if (o.DiskFull) problems.Add("outbox disk full");
            else if (o.StoreError is { Length: > 0 } err) problems.Add($"outbox store failing: {err}");
            var newDrops = dropped.Value - (previousDropped ?? 0);
            if (newDrops > 0 && dropped.Value >= (previousDropped ?? 0)) problems.Add($"dropping records ({newDrops} since the previous report)");
        }

        foreach (var sink in h.Sinks ?? [])
        {
            if (sink?.DiskFull == true) problems.Add($"sink {sink.Name} disk full");
        }

        long? inferenceErrors = h.Model?.InferenceErrors;
        if (inferenceErrors is { } ie && ie > (previousInferenceErrors ?? 0))
        {
            problems.Add($"inference failing ({ie - (previousInferenceErrors ?? 0)} windows since the previous report)");
        }

        return new HealthDigest(h.System?.CpuPercent, h.System?.MemoryUsedPercent, h.System?.TemperatureC, depth, dropped, inferenceErrors,
            problems.Count == 0 ? null : string.Join("; ", problems));
    }
}
