using EdgeMl.FleetHub.Ingest;
using EdgeMl.Protocol.Wire;
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
/// subscriptions only on brokers that persist them. After every (re)connect the hub subscribes again and publishes every
/// device's desired state again (retained), so a broker that lost its retained messages, or was away when an operator
/// set one, still delivers it. With <c>mqtts://</c> the broker is checked against <c>--BrokerCa</c>; <c>--BrokerUser</c>
/// and <c>--BrokerPassword</c> log the hub in. With <c>--BrokerDynsec true</c> devices' identities at Mosquitto follow the
/// hub (ExternalBrokerClient.Dynsec.cs).
/// </summary>
public sealed partial class ExternalBrokerClient(TelemetryIngest ingest, HubSettings settings, Store.IHubStore store, BrokerSessionTakeovers takeovers,
    ILogger<ExternalBrokerClient> logger)
    : BackgroundService, IHubPublisher
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
            LogDown(logger, settings.Broker, 0, $"publishing on {topic}: {Describe(e)}");
        }
    }

    /// <summary>
    /// Acknowledges a device's batch once ingest stored it (never when it must be sent again: <see cref="IngestOutcome.Retry"/>).
    /// True when the broker got the acknowledgement. A batch not stored asks for a reconnect (<paramref name="redeliver"/>):
    /// a broker sends an unacknowledged message again only on a new connection of the session (MQTT 5, 4.4).
    /// </summary>
    private async Task<bool> AcknowledgeWhenStoredAsync(Task<IngestOutcome> outcome, MqttApplicationMessageReceivedEventArgs e, bool redeliver, int? connection,
        CancellationToken stoppingToken)
    {
        // HandleAsync never throws (its outcome says what became of the batch).
        if (await outcome.ConfigureAwait(false) == IngestOutcome.Retry)
        {
            if (redeliver) AskRedelivery();
            return false;
        }

        return await AcknowledgeAsync(e, connection, stoppingToken).ConfigureAwait(false);
    }

    private long _unstored;
    private long _redeliveryAsked;

    /// <summary>
    /// A delivery could not be stored and stays unacknowledged. On a live connection the broker never sends it again, and
    /// it holds one of the session's in-flight slots (Mosquitto: 20) — enough of them and nothing more is delivered. So
    /// the main loop reconnects (<see cref="RedeliverAsync"/>), and the broker delivers what was not acknowledged again.
    /// </summary>
    private void AskRedelivery()
    {
        Interlocked.Increment(ref _unstored);
        Interlocked.CompareExchange(ref _redeliveryAsked, Environment.TickCount64, 0);
    }

    /// <summary>
    /// When deliveries could not be stored: waits a while (1 s, doubling on each reconnect that did not cure it, at most
    /// 30 s: the store may still be away), then disconnects (the session is kept); the loop connects again at once.
    /// </summary>
    private async Task RedeliverAsync(IMqttClient client, CancellationToken stoppingToken)
    {
        var asked = Interlocked.Read(ref _redeliveryAsked);
        if (asked == 0) return;
        // A reconnect less than a minute ago did not cure it: wait longer (1, 2, 4 … 30 s).
        if (Environment.TickCount64 - _lastRedelivery > 60_000) _redeliveries = 0;
        var wait = TimeSpan.FromSeconds(Math.Min(30, Math.Pow(2, Math.Min(_redeliveries, 5))));
        if (Environment.TickCount64 - asked < wait.TotalMilliseconds) return;
        _redeliveries++;
        _lastRedelivery = Environment.TickCount64;
        LogRedeliver(logger, Interlocked.Exchange(ref _unstored, 0), wait.TotalSeconds);
        Interlocked.Exchange(ref _redeliveryAsked, 0);
        await client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection).Build(), stoppingToken)
            .ConfigureAwait(false);
    }

    private int _redeliveries;
    private long _lastRedelivery;

    /// <summary>
    /// Counts the main connection's ends. A delivery remembers the number it arrived under; its PUBACK is sent only while
    /// that is still the number: MQTTnet sends an acknowledgement on whatever connection is current, and a late PUBACK
    /// from the last connection carries a packet identifier the broker may have given to another message on the new one
    /// — which it would then drop as delivered, unstored. (The broker delivers the old one again on the new connection.)
    /// </summary>
    private int _connection;

    /// <summary>
    /// Sends the PUBACK; false when the connection it came on has ended (<paramref name="connection"/>, null: no check) or
    /// goes away first — the broker delivers the message again, and the store drops the duplicate.
    /// </summary>
    private async Task<bool> AcknowledgeAsync(MqttApplicationMessageReceivedEventArgs e, int? connection, CancellationToken stoppingToken)
    {
        if (connection is { } c && c != Volatile.Read(ref _connection)) return false;
        try
        {
            await e.AcknowledgeAsync(stoppingToken).ConfigureAwait(false);
            return true;
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
        {
            // The connection went away after the store (MQTTnet may throw anything from a disposed channel).
            return false;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var uri = new Uri(settings.Broker);
        // Each replica would store only the share the broker hands it, in a LiteDB file of its own: every replica's API
        // then shows part of each device's records. (One replica alone in its group is fine, hence a warning.)
        if (settings.SharedGroup.Length > 0 && settings.Store.Length == 0) LogSharedGroupWithoutStore(logger, settings.SharedGroup);
        using var client = new MqttClientFactory().CreateMqttClient();
        _client = client;
        client.ApplicationMessageReceivedAsync += async e =>
        {
            e.AutoAcknowledge = false;
            var connection = Volatile.Read(ref _connection);
            var message = e.ApplicationMessage;
            if (message.Topic == ResponseTopic)
            {
                OnControlResponse(System.Buffers.BuffersExtensions.ToArray(message.Payload));
                await AcknowledgeAsync(e, connection, stoppingToken).ConfigureAwait(false);
                return;
            }

            try
            {
                await OnDeviceMessageAsync(e, stoppingToken, acks: null, connection).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Never a message left unacknowledged on a live connection without a reconnect to have it delivered again.
                LogHandlerFailed(logger, message.Topic, ex.Message);
                AskRedelivery();
            }
        };
        client.DisconnectedAsync += e =>
        {
            Interlocked.Increment(ref _connection); // acknowledgements still due for this connection are not sent on the next
            if (stoppingToken.IsCancellationRequested) return Task.CompletedTask; // the hub stops: no "connecting again"
            // Another client took this session: two replicas started with one --ClientId take it from each other for ever.
            // (Mosquitto 2.0 just closes the old connection: seen as connections that keep ending soon after they are made.)
            if (!e.ClientWasConnected) return Task.CompletedTask;
            var now = Environment.TickCount64;
            lock (_shortConnections)
            {
                if (now - _connectedAt < 10_000) _shortConnections.Enqueue(now);
                while (_shortConnections.Count > 0 && now - _shortConnections.Peek() > 60_000) _shortConnections.Dequeue();
                if (e.Reason == MqttClientDisconnectReason.SessionTakenOver || (_shortConnections.Count >= 3 && now - _takenOverLogged > 60_000))
                {
                    _takenOverLogged = now;
                    LogSessionTakenOver(logger, settings.ClientId, _shortConnections.Count);
                    return Task.CompletedTask;
                }
            }

            LogConnectionEnded(logger, settings.Broker, e.Reason.ToString(), string.IsNullOrEmpty(e.ReasonString) ? "" : $": {e.ReasonString}");
            return Task.CompletedTask;
        };
        var tls = uri.Scheme == "mqtts";
        MqttClientOptions OptionsFor(string clientId)
        {
            var builder = new MqttClientOptionsBuilder()
                .WithTcpServer(uri.Host, uri.Port > 0 ? uri.Port : tls ? 8883 : 1883)
                .WithClientId(clientId)
                .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
                .WithCleanStart(false)
                .WithSessionExpiryInterval(24 * 3600)
                // The broker must not send the hub more than a device may (--MaxPacketBytes, as the embedded broker takes):
                // a bigger one it drops for the hub instead of the hub holding it in memory.
                .WithMaximumPacketSize((uint)settings.MaxPacketBytes);
            if (settings.BrokerUser.Length > 0) builder = builder.WithCredentials(settings.BrokerUser, settings.BrokerPassword);
            if (tls) builder = builder.WithTlsOptions(BrokerTlsOptions(uri.Host));
            return builder.Build();
        }

        var options = OptionsFor(settings.ClientId);
        // Replicas take over the broker sessions of replicas that are gone (ExternalBrokerClient.Adoption.cs).
        var adoption = SharesSessions ? AdoptLoopAsync(OptionsFor, stoppingToken) : Task.CompletedTask;
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (!client.IsConnected)
                {
                    if (SharesSessions) await Task.Run(() => ClaimOwnSession(remember: true), stoppingToken).ConfigureAwait(false);
                    var connected = await client.ConnectAsync(options, stoppingToken).ConfigureAwait(false);
                    if (connected.ResultCode != MqttClientConnectResultCode.Success)
                    {
                        // Not "unreachable": the broker answered and said no (a wrong --BrokerUser/--BrokerPassword, a
                        // client id it refuses …). Retried, as the broker's configuration may be fixed meanwhile.
                        throw new BrokerRefusedException($"the broker refused the hub's connection: {connected.ResultCode}{(string.IsNullOrEmpty(connected.ReasonString) ? "" : $" ({connected.ReasonString})")}"
                                              + (connected.ResultCode is MqttClientConnectResultCode.BadUserNameOrPassword or MqttClientConnectResultCode.NotAuthorized ? " — check --BrokerUser and --BrokerPassword" : ""));
                    }

                    WarnIfBrokerTakesLargerPackets(connected.MaximumPacketSize);

                    var share = settings.SharedGroup.Length > 0 ? $"$share/{settings.SharedGroup}/" : "";
                    var subscribe = new MqttClientSubscribeOptionsBuilder()
                        .WithTopicFilter($"{share}edgeml/+/tele", MqttQualityOfServiceLevel.AtLeastOnce)
                        .WithTopicFilter($"{share}edgeml/+/health", MqttQualityOfServiceLevel.AtLeastOnce)
                        .WithTopicFilter($"{share}edgeml/+/drift", MqttQualityOfServiceLevel.AtLeastOnce)
                        .WithTopicFilter("edgeml/+/status", MqttQualityOfServiceLevel.AtLeastOnce) // every replica tracks presence
                        .WithTopicFilter("edgeml/+/state/reported", MqttQualityOfServiceLevel.AtLeastOnce)
                        .Build();
                    await client.SubscribeAsync(subscribe, stoppingToken).ConfigureAwait(false);
                    if (settings.BrokerDynsec)
                    {
                        await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(ResponseTopic, MqttQualityOfServiceLevel.AtLeastOnce).Build(), stoppingToken).ConfigureAwait(false);
                        // Before desired states: it gives the hub the right to publish them. When it just did, Mosquitto ends
                        // the hub's connection so that the new rights apply: connect again at once.
                        if (!await SetUpDynsecAsync().ConfigureAwait(false))
                        {
                            if (client.IsConnected) await client.DisconnectAsync(cancellationToken: stoppingToken).ConfigureAwait(false);
                            continue;
                        }

                        // Enrollments and revocations made while the broker was away reach it now.
                        if (_dynsecReady) await ReconcileAsync().ConfigureAwait(false);
                    }

                    // The broker may have lost retained messages (a restart without persistence), and desired states set
                    // while it was away were not delivered: every device's desired state is published again.
                    foreach (var (device, json) in store.DesiredStates())
                    {
                        await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(Topics.StateDesired(device)).WithPayload(json)
                            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithRetainFlag().Build(), stoppingToken).ConfigureAwait(false);
                    }

                    LogConnected(logger, settings.Broker);
                    _connectedAt = Environment.TickCount64;
                    failures = 0;
                }
                else
                {
                    await RedeliverAsync(client, stoppingToken).ConfigureAwait(false);
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
                if (e is BrokerRefusedException) LogRefusedConnection(logger, settings.Broker, wait.TotalMilliseconds, e.Message);
                else LogDown(logger, settings.Broker, wait.TotalMilliseconds, Describe(e));
                await Task.Delay(wait, stoppingToken).ConfigureAwait(false);
            }
        }

        if (client.IsConnected)
        {
            await client.DisconnectAsync(cancellationToken: CancellationToken.None).ConfigureAwait(false);
        }

        try
        {
            await adoption.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// A message on a device's topic: refused (acknowledged and dropped) when no device should send it, else handed to
    /// ingest and acknowledged once stored — never when it must be sent again (<see cref="IngestOutcome.Retry"/>).
    /// </summary>
    /// <param name="acks">When given, gets each message's acknowledgement: true once the broker has it.</param>
    /// <param name="connection">The main connection's number the message came under (<see cref="_connection"/>); null for the take-over's own connection.</param>
    private async Task OnDeviceMessageAsync(MqttApplicationMessageReceivedEventArgs e, CancellationToken stoppingToken, System.Collections.Concurrent.ConcurrentQueue<Task<bool>>? acks = null,
        int? connection = null)
    {
        var message = e.ApplicationMessage;
        // The external broker's ACLs decide who may publish where; the hub still refuses what no device should send.
        bool handled;
        if (!Topics.TrySplit(message.Topic, out var device, out var subtopic) || DeviceIds.Problem(device) is not null || !Topics.IsDevicePublish(subtopic, out _))
        {
            handled = Refuse(device, message.Topic, "unknown-topic");
        }
        else if (Revoked(device) is not { } revoked)
        {
            // The registry could not be read (the store is away): not acknowledged, delivered again after a reconnect.
            handled = false;
            if (acks is null) AskRedelivery();
        }
        else if (revoked)
        {
            handled = Refuse(device, message.Topic, "revoked"); // the broker still lets it in: its own ACLs do not know the registry
        }
        else
        {
            // A batch is parsed and queued for the group commit before HandleAsync first waits. MQTTnet hands this
            // connection's messages over one at a time, so waiting here for the commit would make every commit one
            // batch: the acknowledgement follows the commit instead, and the next message comes at once.
            var outcome = ingest.HandleAsync(device, subtopic, message.Payload);
            if (!outcome.IsCompleted)
            {
                // The taking over of a gone replica's session (acks given) keeps that session instead of reconnecting.
                var ack = AcknowledgeWhenStoredAsync(outcome, e, redeliver: acks is null, connection, stoppingToken);
                acks?.Enqueue(ack);
                return;
            }

            handled = await outcome.ConfigureAwait(false) != IngestOutcome.Retry;
            if (!handled && acks is null) AskRedelivery();
        }

        var acknowledged = handled && await AcknowledgeAsync(e, connection, stoppingToken).ConfigureAwait(false);
        acks?.Enqueue(Task.FromResult(acknowledged));
    }

    /// <summary>Whether the registry says <paramref name="device"/> is revoked; null when the store cannot be read (logged).</summary>
    private bool? Revoked(string device)
    {
        try
        {
            return store.FindDevice(device) is { Enrollment: "revoked" } d && d.Id == device;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogRegistryUnreadable(logger, device, e.Message);
            return null;
        }
    }

    [LoggerMessage(EventId = 2204, Level = LogLevel.Error, Message = "A batch of {Device} is not acknowledged: the registry could not be read: {Error}")]
    private static partial void LogRegistryUnreadable(ILogger logger, string device, string error);

    [LoggerMessage(EventId = 2205, Level = LogLevel.Error, Message = "Handling a message on {Topic} failed; not acknowledged, delivered again after a reconnect: {Error}")]
    private static partial void LogHandlerFailed(ILogger logger, string topic, string error);

    private bool Refuse(string device, string topic, string reason)
    {
        ingest.CountRefused(device.Length > 0 ? device : "?", reason);
        LogRefused(logger, topic);
        return true; // acknowledged and dropped
    }

    /// <summary>TLS to the broker: its certificate must chain to <c>--BrokerCa</c> (PEM) when given, else to the system's trust store.</summary>
    private MqttClientTlsOptions BrokerTlsOptions(string host)
    {
        var tls = new MqttClientTlsOptionsBuilder().UseTls().WithTargetHost(host)
            .WithSslProtocols(System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13);
        if (settings.BrokerCa.Length > 0)
        {
            var roots = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
            roots.ImportFromPemFile(settings.BrokerCa);
            tls = tls.WithTrustChain(roots);
        }

        return tls.Build();
    }

    [LoggerMessage(EventId = 2202, Level = LogLevel.Warning, Message = "Dropped a message on {Topic}: not a topic devices publish on, or the device is revoked")]
    private static partial void LogRefused(ILogger logger, string topic);

    [LoggerMessage(EventId = 2203, Level = LogLevel.Warning,
        Message = "{Batches} device batch(es) could not be stored and are not acknowledged; reconnecting to the broker (waited {WaitS:0} s) so that it delivers them again")]
    private static partial void LogRedeliver(ILogger logger, long batches, double waitS);

    [LoggerMessage(EventId = 2206, Level = LogLevel.Warning,
        Message = "The broker keeps ending this hub's connection soon after it is made ({Times} times in the last minute): most likely another client connects with client id {ClientId} and takes the session over. Each replica needs its own --ClientId")]
    private static partial void LogSessionTakenOver(ILogger logger, string clientId, int times);

    private readonly Queue<long> _shortConnections = new();
    private long _takenOverLogged = -60_000;
    private long _connectedAt;

    [LoggerMessage(EventId = 2207, Level = LogLevel.Information, Message = "The connection to {Broker} ended ({Reason}{Detail}); connecting again")]
    private static partial void LogConnectionEnded(ILogger logger, string broker, string reason, string detail);

    /// <summary>The broker answered the CONNECT and said no: not "unreachable", and retried (its configuration may be fixed meanwhile).</summary>
    private sealed class BrokerRefusedException(string message) : IOException(message);

    /// <summary>
    /// An exception's message and, when it adds something, its innermost one: MQTTnet says only "Error while connecting
    /// host 'Unspecified/127.0.0.1:1883'." and keeps the reason (connection refused, unknown host, TLS) inside.
    /// </summary>
    internal static string Describe(Exception e)
    {
        var root = e.GetBaseException();
        return ReferenceEquals(root, e) || e.Message.Contains(root.Message, StringComparison.Ordinal) ? e.Message : $"{e.Message} ({root.Message})";
    }

    private long _warnedBrokerPacketLimit = -1;

    /// <summary>
    /// A broker that takes larger publishes from devices than the hub takes (<c>--MaxPacketBytes</c>, sent as the hub's
    /// maximum packet size) acknowledges such a batch to its device and then drops it for the hub (Mosquitto logs
    /// "Dropping too large outgoing PUBLISH"): the device forgets it, and it is never stored. The broker's limit comes in
    /// its CONNACK (absent: none). Said once per limit seen, at connect.
    /// </summary>
    private void WarnIfBrokerTakesLargerPackets(uint? brokerMax)
    {
        var limit = brokerMax is > 0 ? (long)brokerMax.Value : 0;
        if (limit is > 0 && limit <= settings.MaxPacketBytes) return;
        if (Interlocked.Exchange(ref _warnedBrokerPacketLimit, limit) == limit) return;
        LogBrokerTakesLargerPackets(logger, settings.Broker, limit > 0 ? $"up to {limit} bytes" : "of any size (no max_packet_size)", settings.MaxPacketBytes);
    }

    [LoggerMessage(EventId = 2214, Level = LogLevel.Warning,
        Message = "External broker {Broker} takes publishes {BrokerLimit} from devices, the hub only up to {HubMax} bytes (--MaxPacketBytes): a device batch larger than that is acknowledged to its device by the broker and then dropped for the hub, never stored. Set the broker's max_packet_size to {HubMax} (docs/scale.md)")]
    private static partial void LogBrokerTakesLargerPackets(ILogger logger, string broker, string brokerLimit, int hubMax);

    [LoggerMessage(EventId = 2216, Level = LogLevel.Warning,
        Message = "--SharedGroup {Group} without --Store: this replica keeps its own LiteDB store, so with other replicas in the group each would store only its share of every device's records. Give every replica the same --Store (PostgreSQL, docs/scale.md)")]
    private static partial void LogSharedGroupWithoutStore(ILogger logger, string group);

    [LoggerMessage(EventId = 2215, Level = LogLevel.Warning, Message = "External broker {Broker} refused the hub, retrying in {WaitMs:0} ms: {Error}")]
    private static partial void LogRefusedConnection(ILogger logger, string broker, double waitMs, string error);

    [LoggerMessage(EventId = 2200, Level = LogLevel.Information, Message = "Connected to external broker {Broker}")]
    private static partial void LogConnected(ILogger logger, string broker);

    [LoggerMessage(EventId = 2201, Level = LogLevel.Warning, Message = "External broker {Broker} unreachable, retrying in {WaitMs:0} ms: {Error}")]
    private static partial void LogDown(ILogger logger, string broker, double waitMs, string error);
}
