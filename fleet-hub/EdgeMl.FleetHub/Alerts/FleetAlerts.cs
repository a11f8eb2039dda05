using System.Text.Json;
using EdgeMl.FleetHub.Broker;
using EdgeMl.FleetHub.Events;
using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Alerts;

/// <summary>
/// The one place alerts are raised and cleared: kept in the store (<see cref="IHubStore.RaiseAlert"/>; at most one
/// active per kind, device and subject), sent to live pages (<see cref="HubEvents"/>, event <c>alert</c>), and for
/// offline alerts published on <c>edgeml/alerts/offline</c>. Kinds: <c>offline</c> (<see cref="OfflineAlerts"/>),
/// <c>drift</c> (<see cref="Drift.DriftAlerts"/>: a device's drift became moderate or major), <c>sensor</c> and
/// <c>rule</c> (the device's own alert records: a sensor failing and recovering, a rule switching on and off).
/// </summary>
public sealed partial class FleetAlerts(IHubStore store, IHubPublisher publisher, HubEvents events, ILogger<FleetAlerts> logger)
{
    public const string OfflineTopic = "edgeml/alerts/offline";
    public static readonly IReadOnlyList<string> Kinds = ["offline", "drift", "sensor", "rule"];
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    public AlertEntry? Raise(string kind, string device, string subject, DateTimeOffset at, string severity, string message)
    {
        var alert = store.RaiseAlert(kind, device, subject, at, severity, message);
        if (alert is not null) Announce(alert, "raised");
        return alert;
    }

    public AlertEntry? Clear(string kind, string device, string subject, DateTimeOffset at)
    {
        var alert = store.ClearAlert(kind, device, subject, at);
        if (alert is not null) Announce(alert, "cleared");
        return alert;
    }

    private void Announce(AlertEntry alert, string state)
    {
        LogAlert(logger, alert.Kind, alert.Device, state, alert.Message);
        events.Publish("alert", AlertView.Of(alert));
        if (alert.Kind != "offline") return;
        var payload = JsonSerializer.SerializeToUtf8Bytes(new OfflineAlertMessage(alert.Id, alert.Device, state, alert.RaisedAt, alert.ClearedAt, alert.Message), Web);
        _ = PublishAsync(payload);
    }

    private async Task PublishAsync(byte[] payload)
    {
        try
        {
            await publisher.PublishAsync(OfflineTopic, payload).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The store has the alert (GET /api/alerts); MQTT consumers are best effort, as for drift alerts.
            LogPublishFailed(logger, OfflineTopic, e.Message);
        }
    }

    /// <summary>
    /// A device's alert records just stored (JSON of <see cref="Protocol.Wire.AlertRecord"/>): a sensor <c>failing</c> or
    /// <c>misconfigured</c> raises a <c>sensor</c> alert, <c>ok</c> clears it; a rule <c>on</c> raises a <c>rule</c> alert,
    /// <c>off</c> clears it; at the device's time of the record. Other kinds (the device's own drift detector, its store)
    /// stay records (<c>GET /api/devices/{id}/alerts</c>). A record that cannot be read is skipped.
    /// </summary>
    public void FromDeviceRecords(string device, IEnumerable<IncomingRecord> records)
    {
        foreach (var r in records)
        {
            if (r.Class != "alert") continue;
            Protocol.Wire.AlertRecord? a;
            try
            {
                a = JsonSerializer.Deserialize(r.Data, Protocol.Json.ProtocolJsonContext.Default.AlertRecord);
            }
            catch (JsonException)
            {
                continue;
            }

            var at = DateTimeOffset.FromUnixTimeMilliseconds(r.At);
            switch (a)
            {
                case { Kind: "sensor", Sensor: { } sensor, State: "failing" or "misconfigured" }:
                    Raise("sensor", device, sensor, at, a.State == "misconfigured" ? "critical" : "warning",
                        $"sensor {sensor} {a.State}{(a.Error is { Length: > 0 } e ? $": {e}" : "")}");
                    break;
                case { Kind: "sensor", Sensor: { } sensor, State: "ok" }:
                    Clear("sensor", device, sensor, at);
                    break;
                case { Kind: "rule", Rule: { } rule, State: "on" }:
                    Raise("rule", device, rule, at, "warning",
                        $"rule {rule} on{(a.Label is { Length: > 0 } l ? $" ({l}" + (a.Score is { } s ? $", score {s:0.###})" : ")") : "")}");
                    break;
                case { Kind: "rule", Rule: { } rule, State: "off" }:
                    Clear("rule", device, rule, at);
                    break;
            }
        }
    }

    [LoggerMessage(EventId = 2800, Level = LogLevel.Information, Message = "Alert {Kind} on {Device} {State}: {Message}")]
    private static partial void LogAlert(ILogger logger, string kind, string device, string state, string message);

    [LoggerMessage(EventId = 2801, Level = LogLevel.Warning, Message = "Publishing an alert on {Topic} failed (it is kept: GET /api/alerts): {Error}")]
    private static partial void LogPublishFailed(ILogger logger, string topic, string error);
}

/// <summary>An alert as the API and the event stream show it.</summary>
public sealed record AlertView(long Id, string Kind, string Device, DateTimeOffset RaisedAt, DateTimeOffset? ClearedAt, string Severity, string Message)
{
    public static AlertView Of(AlertEntry a) => new(a.Id, a.Kind, a.Device, a.RaisedAt, a.ClearedAt, a.Severity, a.Message);
}

/// <summary>What <c>edgeml/alerts/offline</c> carries: <see cref="State"/> is <c>raised</c> or <c>cleared</c>.</summary>
public sealed record OfflineAlertMessage(long Id, string Device, string State, DateTimeOffset RaisedAt, DateTimeOffset? ClearedAt, string Message);
