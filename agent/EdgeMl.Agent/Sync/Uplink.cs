using System.Buffers;
using System.Text.Json;
using EdgeMl.Agent.Outbox;
using EdgeMl.Protocol.Wire;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Diagnostics.Logger;
using MQTTnet.Exceptions;
using MQTTnet.Protocol;

namespace EdgeMl.Agent.Sync;

/// <summary>
/// Delivers the outbox to the hub's MQTT broker (MQTT 5, QoS 1, persistent session): most important
/// records first, in batches, each batch removed from the outbox only after the broker acknowledged it.
/// Announces itself with a retained <c>online</c> status carrying the boot id, and leaves a Last Will
/// <c>offline</c>. Reconnects with jittered exponential backoff; nothing is lost while the link is down,
/// since nothing leaves the outbox unacknowledged. Delivery is at least once: the hub de-duplicates on
/// (device, bootId, seq).
/// </summary>
public sealed partial class Uplink(DeviceOutbox outbox, HubSettings settings, TimeProvider time, ILogger logger) : IDisposable
{
    private readonly IMqttClient _client = new MqttClientFactory(new MqttNetNullLogger(), new TcpOnlyAdapterFactory()).CreateMqttClient();
    private readonly ArrayBufferWriter<byte> _buffer = new(64 * 1024);
    private readonly Random _jitter = new();

    private static readonly RecordClass[] AlertsOnly = [RecordClass.Alert];
    private static readonly RecordClass[] Others = [RecordClass.Health, RecordClass.Drift, RecordClass.Telemetry];
    private long _backlogUpTo;
    private double _tokens;
    private long _refilled;

    /// <summary>Records acknowledged by the broker (PUBACK: stored at the hub) since this uplink started.</summary>
    public long Delivered { get; private set; }

    /// <summary>Records published (acknowledged or not) since this uplink started; a batch sent again after a lost connection counts again.</summary>
    public long Sent { get; private set; }

    /// <summary>Whether the MQTT connection to the hub is up now.</summary>
    public bool Connected => _client.IsConnected;

    private bool _listening;

    /// <summary>
    /// Alerts of any age first, then live records (stored since this connection came up), then the backlog —
    /// at most <see cref="HubSettings.BackfillRecordsPerSecond"/> of it when that is set, so a day's backlog
    /// after an outage does not crowd out live traffic on a thin link. <paramref name="backfill"/> is true
    /// when the batch is backlog (or backlog is waiting for its rate).
    /// </summary>
    private List<StoredRecord> NextBatch(out bool backfill)
    {
        backfill = false;
        var batch = outbox.Peek(settings.BatchSize, AlertsOnly);
        if (batch.Count > 0) return batch;
        batch = outbox.Peek(settings.BatchSize, Others, afterId: _backlogUpTo);
        if (batch.Count > 0 || _backlogUpTo == 0) return batch;

        var allowed = settings.BatchSize;
        if (settings.BackfillRecordsPerSecond > 0)
        {
            var now = time.GetTimestamp();
            _tokens = Math.Min(settings.BatchSize, _tokens + time.GetElapsedTime(_refilled, now).TotalSeconds * settings.BackfillRecordsPerSecond);
            _refilled = now;
            allowed = (int)Math.Min(settings.BatchSize, Math.Floor(_tokens));
        }

        backfill = true;
        if (allowed < 1) return [];
        batch = outbox.Peek(allowed, Others, upToId: _backlogUpTo);
        if (batch.Count == 0) _backlogUpTo = 0; // drained: everything from now on is live
        return batch;
    }

    public async Task RunAsync(CancellationToken ct)
    {
        var failures = 0;
        if (!_listening)
        {
            _client.ApplicationMessageReceivedAsync += OnMessageAsync;
            _listening = true;
        }

        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (!_client.IsConnected)
                {
                    // A connect alone does not reset the backoff: a broker that takes the connection and then refuses
                    // every batch (too large, not authorized) would otherwise be retried several times a second for ever.
                    await ConnectAsync(ct).ConfigureAwait(false);
                    // What is in the outbox now is backlog; what is stored from here on is live.
                    _backlogUpTo = outbox.LastId;
                    _tokens = settings.BatchSize;
                    _refilled = time.GetTimestamp();
                }

                var batch = NextBatch(out var backfill);
                if (batch.Count == 0)
                {
                    failures = 0; // connected with nothing failing
                    await Task.Delay(TimeSpan.FromMilliseconds(backfill ? 50 : 200), time, ct).ConfigureAwait(false);
                    continue;
                }

                if (backfill) _tokens -= batch.Count;

                foreach (var group in batch.GroupBy(r => Topics.For(r.Class, settings.DeviceId)))
                {
                    var records = group.ToList();
                    for (var start = 0; start < records.Count;)
                    {
                        var count = Fits(group.Key, records, start);
                        if (count == 0)
                        {
                            // One record larger than the broker takes: it can never be delivered. Dropped and counted.
                            var r = records[start++];
                            LogTooLarge(logger, DeviceOutbox.Name(r.Class), r.Seq, r.Payload.Length, _maxPacketSize);
                            outbox.Reject(r.Id);
                            continue;
                        }

                        var part = records.GetRange(start, count);
                        Sent += count;
                        var result = await _client.PublishAsync(Message(group.Key, part), ct).ConfigureAwait(false);
                        if (result.ReasonCode == MqttClientPublishReasonCode.NoMatchingSubscribers && settings.RequireSubscriber)
                        {
                            // Taken by the broker, delivered to no hub (no hub subscribed there just now): kept, sent again.
                            throw new UnroutedBatchException($"the broker has no hub subscribed to {group.Key} (restarted, hub not back yet): kept, sent again");
                        }

                        if (!result.IsSuccess)
                        {
                            throw new IOException($"broker refused a batch on {group.Key}: {result.ReasonCode} {result.ReasonString}");
                        }

                        outbox.Acknowledge(part.Select(r => r.Id));
                        Delivered += count;
                        failures = 0;
                        start += count;
                    }
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is MqttCommunicationException or IOException or OperationCanceledException or System.Net.Sockets.SocketException
                                          or InvalidOperationException and not ObjectDisposedException)
            {
                // The link's faults (MQTTnet says "not connected" with InvalidOperationException) are retried; anything
                // else escapes and stops the agent with a reason (the runtime watches this loop).
                failures++;
                var max = Math.Min(settings.ReconnectMaxMs, settings.ReconnectMinMs * Math.Pow(2, Math.Min(failures - 1, 16)));
                var wait = TimeSpan.FromMilliseconds(max * (0.5 + 0.5 * _jitter.NextDouble()));
                LogLinkDown(logger, settings.Broker, failures, wait.TotalMilliseconds, e.Message);
                try
                {
                    // The link itself is fine when only no hub was subscribed: wait and send again on it.
                    if (_client.IsConnected && e is not UnroutedBatchException) await _client.DisconnectAsync(cancellationToken: CancellationToken.None).ConfigureAwait(false);
                    await Task.Delay(wait, time, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                catch (MqttCommunicationException)
                {
                }
            }
        }

        if (_client.IsConnected)
        {
            // A clean stop says offline itself (a crash leaves it to the Last Will).
            try
            {
                await _client.PublishAsync(Status("offline"), CancellationToken.None).ConfigureAwait(false);
                await _client.DisconnectAsync(cancellationToken: CancellationToken.None).ConfigureAwait(false);
            }
            catch (MqttCommunicationException)
            {
            }
        }
    }

    private async Task ConnectAsync(CancellationToken ct)
    {
        var uri = new Uri(settings.Broker);
        var tls = uri.Scheme == "mqtts";
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer(uri.Host, uri.IsDefaultPort || uri.Port <= 0 ? (tls ? 8883 : 1883) : uri.Port)
            .WithClientId(settings.DeviceId)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithCleanStart(false)
            .WithSessionExpiryInterval(7 * 24 * 3600)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(settings.KeepAliveSeconds))
            .WithTimeout(TimeSpan.FromSeconds(10))
            .WithWillTopic(Topics.Status(settings.DeviceId))
            .WithWillPayload(StatusPayload("offline"))
            .WithWillRetain(true)
            .WithWillQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce);
        if (!string.IsNullOrEmpty(settings.Username))
        {
            builder = builder.WithCredentials(settings.Username, settings.Password);
        }

        if (tls)
        {
            builder = builder.WithTlsOptions(BrokerTls.Options(settings, uri.Host));
        }

        var result = await _client.ConnectAsync(builder.Build(), ct).ConfigureAwait(false);
        if (result.ResultCode != MqttClientConnectResultCode.Success)
        {
            throw new IOException($"broker refused the connection: {result.ResultCode} {result.ReasonString}");
        }

        // What the broker announces in CONNACK is what it takes. Maximum packet size: batches are cut to fit it.
        // Receive maximum: one publish is in flight at a time (each batch waits for its PUBACK), within any value.
        // Topic aliases are not used. The session lasts what the broker grants (SessionExpiryInterval), not what was asked.
        _maxPacketSize = result.MaximumPacketSize is > 0 and var max ? (int)Math.Min(max, MqttMaxPacketSize) : MqttMaxPacketSize;
        LogBrokerLimits(logger, _maxPacketSize, result.ReceiveMaximum ?? ushort.MaxValue, result.SessionExpiryInterval);

        await _client.PublishAsync(Status("online"), ct).ConfigureAwait(false);
        // Model updates: the hub's retained desired state for this device arrives right after subscribing.
        await _client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(Topics.StateDesired(settings.DeviceId), MqttQualityOfServiceLevel.AtLeastOnce).Build(), ct).ConfigureAwait(false);
        if (_report is { } pending) await PublishReportAsync(pending, ct).ConfigureAwait(false);
        LogConnected(logger, settings.Broker, settings.DeviceId);
    }

    private MqttApplicationMessage Status(string state) => new MqttApplicationMessageBuilder()
        .WithTopic(Topics.Status(settings.DeviceId))
        .WithPayload(StatusPayload(state))
        .WithRetainFlag(true)
        .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
        .Build();

    private byte[] StatusPayload(string state)
    {
        _buffer.ResetWrittenCount();
        using (var json = new Utf8JsonWriter(_buffer))
        {
            json.WriteStartObject();
            json.WriteString("state"u8, state);
            json.WriteString("boot"u8, outbox.BootId);
            json.WriteNumber("at"u8, time.GetUtcNow().ToUnixTimeMilliseconds());
            json.WriteEndObject();
        }

        return _buffer.WrittenSpan.ToArray();
    }

    /// <summary>The protocol's own limit (268,435,455 bytes), where the broker announces none.</summary>
    private const int MqttMaxPacketSize = 268_435_455;

    /// <summary>Fixed header (≤ 5), topic length (2), packet id (2), property length (≤ 4) and room for properties MQTTnet adds.</summary>
    private const int PublishOverhead = 64;

    private int _maxPacketSize = MqttMaxPacketSize;
    private readonly ArrayBufferWriter<byte> _measure = new(1024);

    /// <summary>How many records from <paramref name="start"/> fit in one PUBLISH on <paramref name="topic"/> under the broker's maximum packet size (0: not even the first).</summary>
    private int Fits(string topic, List<StoredRecord> records, int start)
    {
        // The envelope {"device":"…","records":[…]} plus each record with its comma, measured as Message writes them.
        long size = PublishOverhead + System.Text.Encoding.UTF8.GetByteCount(topic) + Envelope();
        var n = 0;
        for (var i = start; i < records.Count; i++)
        {
            size += Entry(records[i]) + (n > 0 ? 1 : 0);
            if (size > _maxPacketSize) break;
            n++;
        }

        return n;
    }

    private int Envelope()
    {
        _measure.ResetWrittenCount();
        using (var json = new Utf8JsonWriter(_measure))
        {
            json.WriteStartObject();
            json.WriteString("device"u8, settings.DeviceId);
            json.WriteStartArray("records"u8);
            json.WriteEndArray();
            json.WriteEndObject();
        }

        return _measure.WrittenCount;
    }

    private int Entry(StoredRecord r)
    {
        _measure.ResetWrittenCount();
        using (var json = new Utf8JsonWriter(_measure))
        {
            WriteRecord(json, r);
        }

        return _measure.WrittenCount;
    }

    private static void WriteRecord(Utf8JsonWriter json, StoredRecord r)
    {
        json.WriteStartObject();
        json.WriteString("boot"u8, r.BootId);
        json.WriteNumber("seq"u8, r.Seq);
        json.WriteString("class"u8, DeviceOutbox.Name(r.Class));
        json.WriteNumber("at"u8, r.CreatedAt.ToUnixTimeMilliseconds());
        json.WritePropertyName("data"u8);
        json.WriteRawValue(r.Payload, skipInputValidation: true);
        json.WriteEndObject();
    }

    /// <summary>One MQTT message for a batch: <c>{"device":…,"records":[{"boot","seq","class","at","data"}…]}</c>.</summary>
    private MqttApplicationMessage Message(string topic, List<StoredRecord> records)
    {
        _buffer.ResetWrittenCount();
        using (var json = new Utf8JsonWriter(_buffer))
        {
            json.WriteStartObject();
            json.WriteString("device"u8, settings.DeviceId);
            json.WriteStartArray("records"u8);
            foreach (var r in records)
            {
                WriteRecord(json, r);
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(_buffer.WrittenSpan.ToArray())
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .Build();
    }

    /// <summary>Raised with each desired-state message from the hub (on MQTTnet's receive loop: hand work off).</summary>
    public event Action<Protocol.Packages.DesiredModel>? DesiredReceived;

    private Protocol.Packages.ReportedState? _report;

    /// <summary>Reports where the device is with a model update (retained); sent on the next connection when offline.</summary>
    public async Task ReportAsync(Protocol.Packages.ReportedState state)
    {
        _report = state;
        if (!_client.IsConnected) return;
        try
        {
            await PublishReportAsync(state, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Sent again after reconnecting (the model updater's report must never fail its caller).
            LogReportDeferred(logger, e.Message);
        }
    }

    [LoggerMessage(EventId = 1411, Level = LogLevel.Debug, Message = "Update report not sent now, sent after the next connect: {Error}")]
    private static partial void LogReportDeferred(ILogger logger, string error);

    private Task PublishReportAsync(Protocol.Packages.ReportedState state, CancellationToken ct) =>
        _client.PublishAsync(new MqttApplicationMessageBuilder()
            .WithTopic(Topics.StateReported(settings.DeviceId))
            .WithPayload(JsonSerializer.SerializeToUtf8Bytes(state, Protocol.Json.CompactJsonContext.Default.ReportedState))
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithRetainFlag(true).Build(), ct);

    private Task OnMessageAsync(MqttApplicationMessageReceivedEventArgs e)
    {
        if (e.ApplicationMessage.Topic != Topics.StateDesired(settings.DeviceId)) return Task.CompletedTask;
        try
        {
            // Whoever can write the retained topic is not trusted either: typed, validated, then acted on.
            DesiredReceived?.Invoke(DeviceMessageParser.ParseDesired(e.ApplicationMessage.Payload));
        }
        catch (WireFormatException ex)
        {
            LogBadDesired(logger, ex.Message);
            var (name, version) = NamesOf(e.ApplicationMessage.Payload);
            DesiredRefused?.Invoke(ex.Message, name, version);
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// Raised with a desired state that failed validation: the reason, and the model's name and version when the
    /// payload holds them as plain strings (so that a rollout of that model sees the device fail rather than time out).
    /// </summary>
    public event Action<string, string?, string?>? DesiredRefused;

    /// <summary>The <c>name</c> and <c>version</c> of a refused desired state, read leniently; null where absent or not a valid name.</summary>
    private static (string? Name, string? Version) NamesOf(ReadOnlySequence<byte> payload)
    {
        if (payload.Length > 64 * 1024) return (null, null);
        try
        {
            using var doc = JsonDocument.Parse(payload);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return (null, null);
            string? Str(string key) => doc.RootElement.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String
                                       && v.GetString() is { } text && DeviceMessageParser.IsName(text, WireLimits.Default.MaxNameLength) ? text : null;
            return (Str("name"), Str("version"));
        }
        catch (JsonException)
        {
            return (null, null);
        }
    }

    [LoggerMessage(EventId = 1412, Level = LogLevel.Error, Message = "Dropped {Class} record {Seq}: {Bytes} bytes do not fit in the broker's maximum packet size of {MaxPacket} bytes")]
    private static partial void LogTooLarge(ILogger logger, string @class, long seq, int bytes, int maxPacket);

    [LoggerMessage(EventId = 1413, Level = LogLevel.Debug, Message = "Broker limits: maximum packet {MaxPacket} bytes, receive maximum {ReceiveMaximum}, session expiry {SessionExpiry} s")]
    private static partial void LogBrokerLimits(ILogger logger, int maxPacket, int receiveMaximum, uint? sessionExpiry);

    [LoggerMessage(EventId = 1410, Level = LogLevel.Warning, Message = "Ignored a malformed desired state from the hub: {Error}")]
    private static partial void LogBadDesired(ILogger logger, string error);

    public void Dispose() => _client.Dispose();

    [LoggerMessage(EventId = 1400, Level = LogLevel.Information, Message = "Connected to {Broker} as {Device}")]
    private static partial void LogConnected(ILogger logger, string broker, string device);

    [LoggerMessage(EventId = 1401, Level = LogLevel.Warning, Message = "Uplink to {Broker} down ({Failures} in a row), retrying in {WaitMs:0} ms: {Error}")]
    private static partial void LogLinkDown(ILogger logger, string broker, int failures, double waitMs, string error);
}

/// <summary>A batch the broker took but delivered to no subscriber (MQTT 5 PUBACK 0x10): not delivered, kept in the outbox.</summary>
internal sealed class UnroutedBatchException(string message) : IOException(message);
