namespace EdgeMl.FleetHub;

/// <summary>Command line: <c>edgeml-hub --Data DIR --MqttPort 1883 [--Broker mqtt://host:port] --urls http://127.0.0.1:8080</c>.</summary>
public sealed class HubSettings
{
    public string Data { get; set; } = "hub-data";
    public string MqttAddress { get; set; } = "127.0.0.1";
    public int MqttPort { get; set; } = 1883;
    /// <summary><c>mqtt://host:port</c> of an external broker; empty: the embedded broker.</summary>
    public string Broker { get; set; } = "";
    /// <summary>This replica's client id at the external broker (persistent session).</summary>
    public string ClientId { get; set; } = "edgeml-hub-1";
}
