namespace EdgeMl.Agent.Metrics;

/// <summary>
/// Bound from <c>Agent:Metrics</c>: a Prometheus endpoint on the device (<c>GET http://ADDRESS:PORT/metrics</c>) for
/// sites that scrape their devices. Off by default: with <see cref="Port"/> 0 nothing is built or listened on.
/// </summary>
public sealed class MetricsSettings
{
    /// <summary>TCP port of the metrics endpoint; 0 (default): no endpoint.</summary>
    public int Port { get; set; }

    /// <summary>Address it binds: 127.0.0.1 (default: this device only), an IP address, or <c>*</c> (every interface).</summary>
    public string Address { get; set; } = "127.0.0.1";
}
