namespace EdgeMl.FleetHub;

/// <summary>Command line: <c>edgeml-hub --data DIR --mqtt-port 1883 --urls http://127.0.0.1:8080</c>.</summary>
public sealed class HubSettings
{
    public string Data { get; set; } = "hub-data";
    public string MqttAddress { get; set; } = "127.0.0.1";
    public int MqttPort { get; set; } = 1883;
}
