using EdgeMl.FleetHub.Ingest;
using MQTTnet;
using MQTTnet.Exceptions;
using MQTTnet.Protocol;

namespace EdgeMl.FleetHub.Broker;

/// <summary>
/// <c>--Broker mqtt://host:port</c>: the hub as a client of an existing broker (Mosquitto here; EMQX, VerneMQ,
/// HiveMQ clusters in production) instead of its embedded one, with a persistent session (clean start off),
/// so what devices send while the hub is away waits at the broker. A message is acknowledged only after
/// ingest stored it. By default the hub subscribes plainly; with <c>--SharedGroup NAME</c> device batches
/// arrive through MQTT 5 shared subscriptions (<c>$share/NAME/…</c>) so several hub replicas split the load.
/// Measured here: Mosquitto 2.0.11 restores plain subscriptions of a persistent session after its own
/// restart but not shared ones, so batches sent before the hub re-subscribed were lost — use shared
/// subscriptions only on brokers that persist them.
/// </summary>
public sealed partial class ExternalBrokerClient(TelemetryIngest ingest, HubSettings settings, ILogger<ExternalBrokerClient> logger) : BackgroundService, IHubPublisher
{
    private IMqttClient? _client;

    public async Task PublishAsync(string topic, byte[] payload, bool retain = false)
    {
        if (_client is not { IsConnected: true } client) return; // alerts are best effort here; the registry keeps the status
        var message = new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithRetainFlag(retain).Build();
        try
        {
            await client.PublishAsync(message).ConfigureAwait(false);
        }
        catch (Exception e) when (e is MqttCommunicationException or InvalidOperationException or OperationCanceledException)
        {
            LogDown(logger, settings.Broker, 0, $"publishing on {topic}: {e.Message}");
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var uri = new Uri(settings.Broker);
        using var client = new MqttClientFactory().CreateMqttClient();
        _client = client;
        client.ApplicationMessageReceivedAsync += async e =>
        {
            e.AutoAcknowledge = false;
            if (await ingest.HandleAsync(e.ApplicationMessage.Topic, e.ApplicationMessage.Payload).ConfigureAwait(false))
            {
                try
                {
                    await e.AcknowledgeAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is MqttCommunicationException or InvalidOperationException or OperationCanceledException)
                {
                    // The connection went away after the store: the broker re-delivers, the store drops the duplicate.
                }
            }
        };
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer(uri.Host, uri.Port > 0 ? uri.Port : 1883)
            .WithClientId(settings.ClientId)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithCleanStart(false)
            .WithSessionExpiryInterval(24 * 3600)
            .Build();
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (!client.IsConnected)
                {
                    await client.ConnectAsync(options, stoppingToken).ConfigureAwait(false);
                    var share = settings.SharedGroup.Length > 0 ? $"$share/{settings.SharedGroup}/" : "";
                    var subscribe = new MqttClientSubscribeOptionsBuilder()
                        .WithTopicFilter($"{share}edgeml/+/tele", MqttQualityOfServiceLevel.AtLeastOnce)
                        .WithTopicFilter($"{share}edgeml/+/health", MqttQualityOfServiceLevel.AtLeastOnce)
                        .WithTopicFilter($"{share}edgeml/+/drift", MqttQualityOfServiceLevel.AtLeastOnce)
                        .WithTopicFilter("edgeml/+/status", MqttQualityOfServiceLevel.AtLeastOnce) // every replica tracks presence
                        .Build();
                    await client.SubscribeAsync(subscribe, stoppingToken).ConfigureAwait(false);
                    LogConnected(logger, settings.Broker);
                    failures = 0;
                }

                await Task.Delay(500, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                // Whatever the client throws while the broker goes and comes back (communication errors, "connect
                // while a connect is pending", …) is a reason to retry, never to stop the hub.
                failures++;
                var wait = TimeSpan.FromMilliseconds(Math.Min(10_000, 200 * Math.Pow(2, Math.Min(failures, 10))) * (0.5 + Random.Shared.NextDouble() / 2));
                LogDown(logger, settings.Broker, wait.TotalMilliseconds, e.Message);
                await Task.Delay(wait, stoppingToken).ConfigureAwait(false);
            }
        }

        if (client.IsConnected)
        {
            await client.DisconnectAsync(cancellationToken: CancellationToken.None).ConfigureAwait(false);
        }
    }

    [LoggerMessage(EventId = 2200, Level = LogLevel.Information, Message = "Connected to external broker {Broker}")]
    private static partial void LogConnected(ILogger logger, string broker);

    [LoggerMessage(EventId = 2201, Level = LogLevel.Warning, Message = "External broker {Broker} unreachable, retrying in {WaitMs:0} ms: {Error}")]
    private static partial void LogDown(ILogger logger, string broker, double waitMs, string error);
}
