namespace EdgeMl.Agent.Sync;

/// <summary>Bound from <c>Agent:Hub</c>: where the outbox is delivered.</summary>
public sealed class HubSettings
{
    /// <summary><c>mqtt://host:port</c> or <c>mqtts://host:port</c> (TLS) of the hub's broker. Empty: no uplink, records stay in the outbox.</summary>
    public string Broker { get; set; } = "";
    /// <summary>The device id: MQTT client id and the device level of every topic.</summary>
    public string DeviceId { get; set; } = "";
    public string? Username { get; set; }
    /// <summary>The hub's HTTP address (model downloads); from the enrolled identity when not set.</summary>
    public string? HubUrl { get; set; }
    public string? Password { get; set; }
    /// <summary>With <c>mqtts://</c>: a PEM file of the CA(s) the broker's certificate must chain to (default: the system's trust store).</summary>
    public string? CaCertificate { get; set; }
    /// <summary>A PEM file of the CA(s) the hub's HTTPS certificate must chain to (enrollment's <c>--ca</c>); default: <see cref="CaCertificate"/>, then the system's trust store.</summary>
    public string? HubCaCertificate { get; set; }
    /// <summary>With <c>mqtts://</c>: this device's certificate (PEM), for brokers that ask for one; needs <see cref="ClientKey"/>.</summary>
    public string? ClientCertificate { get; set; }
    /// <summary>The private key (PEM) of <see cref="ClientCertificate"/>.</summary>
    public string? ClientKey { get; set; }
    /// <summary>
    /// The hub's model-signing public keys (PEM), handed over at enrollment (<see cref="DeviceIdentity.SigningKeys"/>):
    /// a package that arrives over the air must be signed by one of them or by a key in <c>Agent:TrustedKeys</c>.
    /// </summary>
    public List<string> SigningKeys { get; set; } = [];
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
    /// <summary>
    /// A batch the broker acknowledged with "no matching subscribers" (MQTT 5 reason 0x10) was delivered to no hub — an
    /// external broker restarted and no hub replica has subscribed again yet (Mosquitto does not keep shared subscriptions
    /// across its restart): true (default) keeps it in the outbox and sends it again after the reconnect backoff; false takes
    /// that acknowledgement as delivered (hubs before this version answer every batch so on their embedded broker).
    /// </summary>
    public bool RequireSubscriber { get; set; } = true;
}
