using System.Net;
using EdgeMl.FleetHub.Ingest;
using MQTTnet.Server;

namespace EdgeMl.FleetHub.Broker;

/// <summary>
/// The hub's embedded MQTT broker (MQTTnet.Server). Every publish goes through ingest before the broker
/// answers it, so a device's PUBACK means "stored".
/// </summary>
public sealed class EmbeddedBroker(TelemetryIngest ingest, HubSettings settings) : IHostedService, IAsyncDisposable
{
    private MqttServer? _server;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var options = new MqttServerOptionsBuilder()
            .WithDefaultEndpoint()
            .WithDefaultEndpointBoundIPAddress(IPAddress.Parse(settings.MqttAddress))
            .WithDefaultEndpointPort(settings.MqttPort)
            .WithPersistentSessions()
            .Build();
        _server = new MqttServerFactory().CreateMqttServer(options);
        _server.InterceptingPublishAsync += e =>
        {
            if (!ingest.Handle(e.ApplicationMessage.Topic, e.ApplicationMessage.Payload))
            {
                e.ProcessPublish = false;
            }

            return Task.CompletedTask;
        };
        await _server.StartAsync().ConfigureAwait(false);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is not null) await _server.StopAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.StopAsync().ConfigureAwait(false);
            _server.Dispose();
        }
    }
}
