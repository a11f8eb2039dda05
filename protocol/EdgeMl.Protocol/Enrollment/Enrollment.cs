namespace EdgeMl.Protocol.Enrollment;

/// <summary>
/// <c>POST /api/enroll</c>: a device trades the one-time token the operator got from
/// <c>edgeml devices enroll ID</c> for its MQTT credentials.
/// </summary>
public sealed class EnrollmentClaim
{
    public string Token { get; set; } = "";
}

/// <summary>The hub's answer to an <see cref="EnrollmentClaim"/>: who the device is and how it logs in to the broker.</summary>
public sealed class DeviceCredentials
{
    /// <summary>The device id: MQTT client id and user name, and the device level of its topics.</summary>
    public string DeviceId { get; set; } = "";
    public string Password { get; set; } = "";
    /// <summary>
    /// <c>mqtt://host:port</c> (or <c>mqtts://</c>) when the hub uses an external broker: the device's broker, and then
    /// <see cref="MqttPort"/> and <see cref="MqttTlsPort"/> are left out (the hub's own broker does not run). Null: the
    /// hub's embedded broker, on the hub's host at those ports.
    /// </summary>
    public string? Broker { get; set; }
    /// <summary>The embedded broker's plain MQTT port; null (left out of the JSON): none, or an external <see cref="Broker"/>.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public int? MqttPort { get; set; }
    /// <summary>The embedded broker's MQTT-over-TLS port; null (left out): none, or an external <see cref="Broker"/>. Devices prefer it when there is one.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public int? MqttTlsPort { get; set; }
    /// <summary>
    /// The public keys (PEM, SubjectPublicKeyInfo) the hub accepts model pushes signed with: the device keeps them with
    /// its identity and refuses any over-the-air package not signed by one of them. Empty from a hub without
    /// <c>--TrustedKeys</c> (which accepts no pushes).
    /// </summary>
    public List<string> SigningKeys { get; set; } = [];
}
