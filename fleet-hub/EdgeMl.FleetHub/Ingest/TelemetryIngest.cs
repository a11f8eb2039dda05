using System.Buffers;
using System.Text.Json;
using EdgeMl.FleetHub.Store;
using EdgeMl.Protocol.Wire;
using Microsoft.Extensions.Logging;

namespace EdgeMl.FleetHub.Ingest;

/// <summary>
/// Takes what devices publish under <c>edgeml/{device}/…</c>: batches on <c>tele</c> and <c>health</c> are stored
/// (de-duplicated) before the broker acknowledges them; <c>status</c> sets presence. A malformed payload is
/// counted, logged with the device id and dropped; it affects no other device.
/// </summary>
public sealed partial class TelemetryIngest(HubStore store, TimeProvider time, ILogger<TelemetryIngest> logger)
{
    private long _malformed;
    private long _refused;

    public long Malformed => Interlocked.Read(ref _malformed);

    /// <summary>Publishes refused by the broker's ACL (a device writing outside its own topics).</summary>
    public long Refused => Interlocked.Read(ref _refused);

    public void CountRefused() => Interlocked.Increment(ref _refused);

    /// <summary>Returns false when the message must not be acknowledged (it could not be stored).</summary>
    public bool Handle(string topic, ReadOnlySequence<byte> payload)
    {
        var parts = topic.Split('/');
        if (parts.Length < 3 || parts[0] != Topics.Root) return true;
        var device = parts[1];
        try
        {
            switch (parts[2])
            {
                case "tele" or "health" when parts.Length == 3:
                    var records = Parse(device, payload);
                    store.StoreBatch(device, records, time.GetUtcNow());
                    return true;
                case "status" when parts.Length == 3:
                    using (var doc = JsonDocument.Parse(payload))
                    {
                        var state = doc.RootElement.GetProperty("state").GetString() ?? "unknown";
                        var boot = doc.RootElement.TryGetProperty("boot", out var b) ? b.GetString() : null;
                        store.SetPresence(device, state, boot, time.GetUtcNow());
                    }

                    return true;
                default:
                    return true;
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            Interlocked.Increment(ref _malformed);
            LogMalformed(logger, device, topic, e.Message);
            return true; // acknowledged and dropped: re-sending a malformed payload would not help
        }
    }

    private static List<IncomingRecord> Parse(string device, ReadOnlySequence<byte> payload)
    {
        using var doc = JsonDocument.Parse(payload);
        var root = doc.RootElement;
        if (root.GetProperty("device").GetString() != device)
        {
            throw new FormatException($"batch names device '{root.GetProperty("device").GetString()}' but came on device {device}'s topic");
        }

        var list = new List<IncomingRecord>();
        foreach (var r in root.GetProperty("records").EnumerateArray())
        {
            list.Add(new IncomingRecord(
                r.GetProperty("boot").GetString() ?? throw new FormatException("record without boot"),
                r.GetProperty("seq").GetInt64(),
                r.GetProperty("class").GetString() ?? throw new FormatException("record without class"),
                r.GetProperty("at").GetInt64(),
                r.GetProperty("data").GetRawText()));
        }

        return list;
    }

    [LoggerMessage(EventId = 2100, Level = LogLevel.Warning, Message = "Malformed payload from device {Device} on {Topic} dropped: {Error}")]
    private static partial void LogMalformed(ILogger logger, string device, string topic, string error);
}
