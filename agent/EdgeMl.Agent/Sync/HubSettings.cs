namespace EdgeMl.Agent.Sync;

/// <summary>Bound from <c>Agent:Hub</c>: where the outbox is delivered.</summary>
public sealed class HubSettings
{
    /// <summary><c>mqtt://host:port</c> of the hub's broker. Empty: no uplink, records stay in the outbox.</summary>
    public string Broker { get; set; } = "";
    /// <summary>The device id: MQTT client id and the device level of every topic.</summary>
    public string DeviceId { get; set; } = "";
    public string? Username { get; set; }
    public string? Password { get; set; }
    /// <summary>Records per MQTT message (telemetry goes in batches).</summary>
    public int BatchSize { get; set; } = 200;
    public int KeepAliveSeconds { get; set; } = 30;
    /// <summary>
    /// After an outage: records per second of backlog sent next to live traffic (0: as fast as the link takes
    /// them). Alerts and records stored since the link came back are never held back.
    /// </summary>
    public double BackfillRecordsPerSecond { get; set; }
    /// <summary>First wait after a failed connection; doubles (with jitter) up to <see cref="ReconnectMaxMs"/>.</summary>
    public int ReconnectMinMs { get; set; } = 500;
    public int ReconnectMaxMs { get; set; } = 30_000;
}
