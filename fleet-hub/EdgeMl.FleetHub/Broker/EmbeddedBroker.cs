using System.Collections.Concurrent;
using System.Net;
using EdgeMl.FleetHub.Ingest;
using EdgeMl.FleetHub.Store;
using EdgeMl.Protocol.Wire;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace EdgeMl.FleetHub.Broker;

/// <summary>
/// The hub's embedded MQTT broker (MQTTnet.Server). Only enrolled devices get in (user name = client id =
/// device id, password from enrollment); a device may publish and subscribe only under
/// <c>edgeml/{its id}/…</c>. Every publish goes through ingest before the broker answers it, so a
/// device's PUBACK means "stored".
/// </summary>
public sealed partial class EmbeddedBroker(TelemetryIngest ingest, IHubStore store, HubSettings settings, ILogger<EmbeddedBroker> logger)
    : IHostedService, IDeviceConnections, IHubPublisher, IAsyncDisposable
{
    private MqttServer? _server;

    // Connections the broker has announced and not yet finished closing, by client id. MQTTnet 5 cleans a
    // closing connection up by client id; a reconnect with the same id in that instant can lose its new
    // session to the old connection's clean-up (seen here as mosquitto_pub's "connection lost"). A new
    // connection for an id waits (briefly) until the previous one is gone.
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _closing = new(StringComparer.Ordinal);

    // Devices with an open connection now (client id; a takeover keeps the id in).
    private readonly ConcurrentDictionary<string, byte> _connectedDevices = new(StringComparer.Ordinal);

    /// <inheritdoc />
    public int? ConnectedDevices => _connectedDevices.Count;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var builder = new MqttServerOptionsBuilder().WithPersistentSessions();
        // MQTTnet also listens on IPv6, on every interface unless told otherwise: the IPv6 side follows --MqttAddress
        // (0.0.0.0: every interface; any other address, the default 127.0.0.1 included: IPv6 loopback only).
        var address = IPAddress.Parse(settings.MqttAddress);
        var v6 = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? address
            : address.Equals(IPAddress.Any) ? IPAddress.IPv6Any : IPAddress.IPv6Loopback;
        builder = settings.MqttPort > 0
            ? builder.WithDefaultEndpoint().WithDefaultEndpointBoundIPAddress(address).WithDefaultEndpointBoundIPV6Address(v6).WithDefaultEndpointPort(settings.MqttPort)
            : builder.WithoutDefaultEndpoint();
        if (settings.MqttTlsPort > 0)
        {
            builder = builder.WithEncryptedEndpoint()
                .WithEncryptedEndpointBoundIPAddress(address)
                .WithEncryptedEndpointBoundIPV6Address(v6)
                .WithEncryptedEndpointPort(settings.MqttTlsPort)
                .WithEncryptionCertificate(BrokerCertificate.Load(settings))
                .WithEncryptionSslProtocol(System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13);
        }

        var options = builder.Build();
        _server = new MqttServerFactory().CreateMqttServer(options);
        _server.ValidatingConnectionAsync += ValidateAsync;
        _server.ClientConnectedAsync += e =>
        {
            // A resumed persistent session keeps the items of its first connection: the role decided for this one wins.
            if (_roles.TryRemove(e.ClientId, out var role)) e.SessionItems[RoleKey] = role;
            if (RoleOf(e.SessionItems) == ConnectionRole.Device) _connectedDevices[e.ClientId] = 0;
            _closing[e.ClientId] = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return Task.CompletedTask;
        };
        _server.ClientDisconnectedAsync += e =>
        {
            if (e.DisconnectType != MqttClientDisconnectType.Takeover && _closing.TryRemove(e.ClientId, out var gone)) gone.TrySetResult();
            if (e.DisconnectType != MqttClientDisconnectType.Takeover) _connectedDevices.TryRemove(e.ClientId, out _);
            return Task.CompletedTask;
        };
        _server.InterceptingSubscriptionAsync += e =>
        {
            var allowed = RoleOf(e.SessionItems) switch
            {
                ConnectionRole.Consumer => e.TopicFilter.Topic is "edgeml/alerts/#" || e.TopicFilter.Topic.StartsWith("edgeml/alerts/", StringComparison.Ordinal),
                ConnectionRole.Device => Owns(e.ClientId, e.TopicFilter.Topic),
                _ => false,
            };
            if (!allowed)
            {
                e.ProcessSubscription = false;
                e.Response.ReasonCode = MqttSubscribeReasonCode.NotAuthorized;
                LogRefusedSubscription(logger, e.ClientId, e.TopicFilter.Topic);
            }

            return Task.CompletedTask;
        };
        _server.InterceptingPublishAsync += async e =>
        {
            var role = RoleOf(e.SessionItems);
            if (role == ConnectionRole.Hub) return; // the hub's own messages (injected with the hub's session items only)
            var message = e.ApplicationMessage;
            var split = Topics.TrySplit(message.Topic, out var device, out var subtopic);
            var refusal = role != ConnectionRole.Device || !split || device != e.ClientId ? "acl"
                : !Topics.IsDevicePublish(subtopic, out var mayRetain) ? "unknown-topic"
                : message.Retain && !mayRetain ? "retained"
                : message.Payload.Length > settings.MaxPacketBytes ? "too-large"
                : null;
            if (refusal is not null)
            {
                // MQTT 3.1.1 has no negative PUBACK: closing the connection is the only answer a client sees.
                e.ProcessPublish = false;
                e.Response.ReasonCode = refusal == "too-large" ? MqttPubAckReasonCode.PayloadFormatInvalid : MqttPubAckReasonCode.NotAuthorized;
                e.CloseConnection = true;
                ingest.CountRefused(e.ClientId, refusal);
                LogRefusedPublish(logger, e.ClientId, message.Topic, refusal);
            }
            else
            {
                switch (await ingest.HandleAsync(e.ClientId, subtopic, message.Payload).ConfigureAwait(false))
                {
                    case IngestOutcome.Stored when subtopic is "tele" or "health" or "drift":
                        // Stored: nobody else may subscribe to a device's batches here, so they are not forwarded, and the
                        // PUBACK says Success (forwarded to no one it would say NoMatchingSubscribers, which agents take as
                        // "no hub got it, send again": Agent:Hub:RequireSubscriber).
                        e.ProcessPublish = false;
                        break;
                    case IngestOutcome.Dropped:
                        e.ProcessPublish = false; // acknowledged, but a malformed message is neither retained nor forwarded
                        break;
                    case IngestOutcome.Retry:
                        // Not stored: no success PUBACK, so the device keeps the batch and sends it again.
                        e.ProcessPublish = false;
                        e.Response.ReasonCode = MqttPubAckReasonCode.UnspecifiedError;
                        e.CloseConnection = true;
                        break;
                }
            }
        };
        await _server.StartAsync().ConfigureAwait(false);
    }

    /// <summary>User name of alert consumers: they log in with an API token and may only subscribe to <c>edgeml/alerts/#</c>.</summary>
    public const string ConsumerUser = "api";

    /// <summary>
    /// Who a connection is, decided once when it is validated and kept with its session: the ACL checks use this,
    /// never a client-id prefix. The hub's own messages carry <see cref="ConnectionRole.Hub"/> in items no client can reach.
    /// </summary>
    private enum ConnectionRole
    {
        None,
        Device,
        Consumer,
        Hub,
    }

    private static readonly object RoleKey = new();
    private readonly System.Collections.Hashtable _hubItems = new() { [RoleKey] = ConnectionRole.Hub };
    private readonly ConcurrentDictionary<string, ConnectionRole> _roles = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _consumerTokens = new(StringComparer.Ordinal);

    private static ConnectionRole RoleOf(System.Collections.IDictionary? items) =>
        items is not null && items.Contains(RoleKey) && items[RoleKey] is ConnectionRole r ? r : ConnectionRole.None;

    private void Grant(ValidatingConnectionEventArgs e, ConnectionRole role)
    {
        e.SessionItems[RoleKey] = role;
        _roles[e.ClientId] = role;
    }

    private async Task ValidateAsync(ValidatingConnectionEventArgs e)
    {
        var id = e.ClientId;
        if (e.UserName == ConsumerUser)
        {
            if (!id.StartsWith("api-", StringComparison.Ordinal) || store.ApiTokenRole(Security.Secrets.Hash(e.Password ?? ""), DateTimeOffset.UtcNow) is null)
            {
                e.ReasonCode = MqttConnectReasonCode.NotAuthorized;
                LogRefused(logger, id, e.RemoteEndPoint?.ToString() ?? "?", "an alert consumer needs a client id starting with 'api-' and a valid API token");
                return;
            }

            Grant(e, ConnectionRole.Consumer);
            _consumerTokens[id] = Security.Secrets.Hash(e.Password ?? "");
            return;
        }

        if (DeviceIds.Problem(id) is { } problem)
        {
            // Also a device enrolled before reserved names were refused: it must not act as the hub or a consumer.
            e.ReasonCode = MqttConnectReasonCode.ClientIdentifierNotValid;
            LogRefused(logger, id, e.RemoteEndPoint?.ToString() ?? "?", problem);
            return;
        }

        if (string.IsNullOrEmpty(e.UserName) || e.UserName != id)
        {
            e.ReasonCode = MqttConnectReasonCode.NotAuthorized;
            LogRefused(logger, id, e.RemoteEndPoint?.ToString() ?? "?", "user name must be the device id (= client id)");
            return;
        }

        var access = store.CheckDevice(id, e.Password ?? "");
        if (access != DeviceAccess.Allowed)
        {
            e.ReasonCode = access switch
            {
                DeviceAccess.Revoked => MqttConnectReasonCode.Banned,
                DeviceAccess.BadPassword => MqttConnectReasonCode.BadUserNameOrPassword,
                _ => MqttConnectReasonCode.NotAuthorized,
            };
            LogRefused(logger, id, e.RemoteEndPoint?.ToString() ?? "?", access switch
            {
                DeviceAccess.Revoked => "revoked",
                DeviceAccess.BadPassword => "wrong password",
                _ => "not enrolled",
            });
            return;
        }

        Grant(e, ConnectionRole.Device);
        if (_closing.TryGetValue(id, out var previous))
        {
            await Task.WhenAny(previous.Task, Task.Delay(TimeSpan.FromSeconds(1))).ConfigureAwait(false);
        }
    }

    /// <summary>A device's own subtree: <c>edgeml/{id}/…</c>, with no wildcard standing in for the id.</summary>
    private static bool Owns(string clientId, string topic) =>
        topic.StartsWith($"{Topics.Root}/{clientId}/", StringComparison.Ordinal) && clientId.IndexOfAny(['+', '#', '/']) < 0;

    /// <summary>Publishes as the hub itself (not through a device's ACL): alerts for consumers, retained desired state.</summary>
    public async Task PublishAsync(string topic, byte[] payload, bool retain = false)
    {
        if (_server is null) return;
        var message = new MQTTnet.MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithRetainFlag(retain).Build();
        await _server.InjectApplicationMessage(new InjectedMqttApplicationMessage(message) { SenderClientId = HubClientId, CustomSessionItems = _hubItems }).ConfigureAwait(false);
    }

    public const string HubClientId = "edgeml-hub";

    public async Task DisconnectAsync(string deviceId)
    {
        if (_server is null) return;
        var clients = await _server.GetClientsAsync().ConfigureAwait(false);
        foreach (var c in clients.Where(c => c.Id == deviceId))
        {
            await c.DisconnectAsync(new MqttServerClientDisconnectOptions { ReasonCode = MqttDisconnectReasonCode.AdministrativeAction }).ConfigureAwait(false);
        }
    }

    /// <summary>Ends the sessions of alert consumers that logged in with one of these API tokens (hashes): a revoked token stops at once.</summary>
    public async Task DisconnectConsumersAsync(IReadOnlyCollection<string> tokenHashes)
    {
        if (_server is null || tokenHashes.Count == 0) return;
        var ids = _consumerTokens.Where(c => tokenHashes.Contains(c.Value)).Select(c => c.Key).ToHashSet(StringComparer.Ordinal);
        foreach (var c in (await _server.GetClientsAsync().ConfigureAwait(false)).Where(c => ids.Contains(c.Id)))
        {
            await c.DisconnectAsync(new MqttServerClientDisconnectOptions { ReasonCode = MqttDisconnectReasonCode.AdministrativeAction }).ConfigureAwait(false);
        }
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

    [LoggerMessage(EventId = 2300, Level = LogLevel.Warning, Message = "Refused MQTT connection of '{Device}' from {Endpoint}: {Reason}")]
    private static partial void LogRefused(ILogger logger, string device, string endpoint, string reason);

    [LoggerMessage(EventId = 2301, Level = LogLevel.Warning, Message = "Refused publish of '{Device}' to {Topic} ({Reason}: acl = not its own topic, unknown-topic = not a protocol topic, retained = retained where the protocol does not retain, too-large = over --MaxPacketBytes); connection closed")]
    private static partial void LogRefusedPublish(ILogger logger, string device, string topic, string reason);

    [LoggerMessage(EventId = 2302, Level = LogLevel.Warning, Message = "Refused subscription of device '{Device}' to {Filter}: not its own topics")]
    private static partial void LogRefusedSubscription(ILogger logger, string device, string filter);
}

/// <summary>Live device connections the hub can end (revocation).</summary>
public interface IDeviceConnections
{
    /// <summary>
    /// A device claimed its enrollment with this password: let it in at the broker. The embedded broker checks the
    /// registry itself; an external one with <c>--BrokerDynsec</c> gets the device's client and role.
    /// </summary>
    /// <exception cref="BrokerIdentityException">The broker did not take it (one line: what and why).</exception>
    Task GrantAsync(string deviceId, string password) => Task.CompletedTask;

    /// <summary>Revocation: ends the device's connection (and, at an external broker with <c>--BrokerDynsec</c>, its login).</summary>
    /// <exception cref="BrokerIdentityException">The broker did not take it.</exception>
    Task DisconnectAsync(string deviceId);

    /// <summary>Ends alert consumers' sessions opened with these API tokens (SHA-256 hashes).</summary>
    Task DisconnectConsumersAsync(IReadOnlyCollection<string> tokenHashes);

    /// <summary>
    /// Devices with an open MQTT connection to this broker now; null where the hub cannot see connections (an external
    /// broker: presence from the devices' status messages stands in for it).
    /// </summary>
    int? ConnectedDevices => null;

    /// <summary>
    /// The device's login at an external broker with <c>--BrokerDynsec</c> (<c>ok</c>, <c>pending</c>, <c>missing</c>,
    /// <c>revoking</c>, <c>unknown</c>: ExternalBrokerClient.LoginState); null where the hub checks logins itself (the embedded broker).
    /// </summary>
    string? LoginState(string deviceId, string enrollment) => null;
}

/// <summary>The hub's own messages to MQTT (alerts, desired state).</summary>
public interface IHubPublisher
{
    Task PublishAsync(string topic, byte[] payload, bool retain = false);
}
