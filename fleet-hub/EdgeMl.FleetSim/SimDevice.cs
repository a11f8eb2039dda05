using System.Buffers;
using System.Text.Json;
using EdgeMl.Protocol.Wire;
using MQTTnet;
using MQTTnet.Protocol;
using Polly;
using Polly.Retry;

namespace EdgeMl.FleetSim;

/// <summary>
/// One simulated device speaking the agent's real protocol: MQTT 5 with its enrolled credentials, retained
/// status with a boot id and a Last Will, telemetry and health batches of (boot, seq) records, QoS 1.
/// Thousands live in one process; each costs one MQTT connection and a small buffer.
/// </summary>
public sealed class SimDevice(string id, string password) : IAsyncDisposable
{
    private readonly IMqttClient _client = new MqttClientFactory().CreateMqttClient();
    private readonly ArrayBufferWriter<byte> _buffer = new(16 * 1024);
    private readonly string _boot = Guid.NewGuid().ToString("N")[..16];
    private long _teleSeq;
    private long _healthSeq;

    public string Id { get; } = id;
    public long Disconnects { get; private set; }

    /// <summary>Telemetry records the broker acknowledged (PUBACK success): seq 1..<see cref="AckedTelemetry"/>, as each batch waits for its PUBACK.</summary>
    public long AckedTelemetry { get; private set; }

    /// <summary>Health records the broker acknowledged: seq 1..<see cref="AckedHealth"/>.</summary>
    public long AckedHealth { get; private set; }
    public bool IsConnected => _client.IsConnected;

    public async Task ConnectAsync(Uri broker, CancellationToken ct)
    {
        _client.DisconnectedAsync += e =>
        {
            if (e.ClientWasConnected) Disconnects++;
            return Task.CompletedTask;
        };
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer(broker.Host, broker.Port > 0 ? broker.Port : 1883)
            .WithClientId(Id)
            .WithCredentials(Id, password)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(30))
            .WithTimeout(TimeSpan.FromSeconds(60))
            .WithWillTopic(Topics.Status(Id))
            .WithWillPayload(Status("offline"))
            .WithWillRetain(true)
            .WithWillQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .Build();
        _options = options;
        var result = await _client.ConnectAsync(options, ct).ConfigureAwait(false);
        if (result.ResultCode != MqttClientConnectResultCode.Success) throw new InvalidOperationException($"{Id}: {result.ResultCode}");
        await PublishAsync(Topics.Status(Id), Status("online"), retain: true, ct).ConfigureAwait(false);
    }

    /// <summary>Connects again with the options of <see cref="ConnectAsync"/> and says it is online (one caller at a time).</summary>
    private async Task ReconnectAsync(CancellationToken ct)
    {
        await _reconnecting.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (_client.IsConnected) return;
            var result = await _client.ConnectAsync(_options!, ct).ConfigureAwait(false);
            if (Refusal(result.ResultCode)) throw new ConnectionRefusedException($"{Id}: the broker refuses this device ({result.ResultCode}): revoked, or its password changed");
            if (result.ResultCode != MqttClientConnectResultCode.Success) throw new IOException($"{Id}: reconnect refused: {result.ResultCode}");
            await PublishAsync(Topics.Status(Id), Status("online"), retain: true, ct).ConfigureAwait(false);
        }
        finally
        {
            _reconnecting.Release();
        }
    }

    private readonly SemaphoreSlim _reconnecting = new(1, 1);

    /// <summary>Connect answers that another try will not change (MQTT 5 reason codes 0x86, 0x87, 0x8A, 0x8C).</summary>
    private static bool Refusal(MqttClientConnectResultCode code) => code is MqttClientConnectResultCode.BadUserNameOrPassword
        or MqttClientConnectResultCode.NotAuthorized or MqttClientConnectResultCode.Banned or MqttClientConnectResultCode.BadAuthenticationMethod;

    /// <summary>The broker refuses the device itself: sending again is pointless, the run stops with this reason.</summary>
    public sealed class ConnectionRefusedException(string message) : IOException(message);

    /// <summary>A batch of <paramref name="count"/> telemetry records produced now.</summary>
    public Task SendTelemetryAsync(int count, CancellationToken ct)
    {
        var at = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        return SendAsync(Topics.Telemetry(Id), "telemetry", count, ref _teleSeq, at, static (w, seq) =>
        {
            w.WriteString("label"u8, seq % 50 == 0 ? "imbalance"u8 : "normal"u8);
            w.WriteNumber("score"u8, 0.93 + (seq % 7) / 100.0);
            w.WriteNumber("latencyMs"u8, 0.16);
        }, ct);
    }

    public Task SendHealthAsync(CancellationToken ct)
    {
        var now = DateTimeOffset.UtcNow;
        return SendAsync(Topics.Health(Id), "health", 1, ref _healthSeq, now.ToUnixTimeMilliseconds(), (w, _) =>
        {
            w.WriteString("at"u8, now);
            w.WriteStartObject("model"u8);
            w.WriteString("name"u8, "vibration-fault"u8);
            w.WriteString("version"u8, "1.0.0"u8);
            w.WriteNumber("latencyP99Ms"u8, 0.5);
            w.WriteEndObject();
        }, ct);
    }

    private Task SendAsync(string topic, string recordClass, int count, ref long seq, long at, Action<Utf8JsonWriter, long> data, CancellationToken ct)
    {
        byte[] payload;
        // The telemetry and the health loop send at the same time: one writes the shared buffer at a time.
        lock (_buffer)
        {
            payload = Write(recordClass, count, ref seq, at, data);
        }

        return PublishCountedAsync(topic, payload, count, recordClass == "health", ct);
    }

    private byte[] Write(string recordClass, int count, ref long seq, long at, Action<Utf8JsonWriter, long> data)
    {
        _buffer.ResetWrittenCount();
        using (var w = new Utf8JsonWriter(_buffer))
        {
            w.WriteStartObject();
            w.WriteString("device"u8, Id);
            w.WriteStartArray("records"u8);
            for (var i = 0; i < count; i++)
            {
                var s = ++seq;
                w.WriteStartObject();
                w.WriteString("boot"u8, _boot);
                w.WriteNumber("seq"u8, s);
                w.WriteString("class"u8, recordClass);
                w.WriteNumber("at"u8, at);
                w.WritePropertyName("data"u8);
                w.WriteStartObject();
                data(w, s);
                w.WriteEndObject();
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return _buffer.WrittenMemory.ToArray();
    }

    /// <summary>
    /// When set (<c>edgeml-fleetsim run</c>): a batch the broker did not acknowledge (the connection broke, the broker
    /// restarted, no hub subscribed yet) is sent again, unchanged (the same boot and seqs: the hub stores it once), after
    /// reconnecting, with a growing pause (0.5 s doubling to 5 s, jittered; Polly), until it is acknowledged or this token is
    /// cancelled. Unset: a failed publish throws.
    /// </summary>
    public CancellationToken? ResendUntil { get; set; }

    /// <summary>Batches that had to be sent again after a failed publish (<see cref="ResendUntil"/>), each counted once however many tries it took.</summary>
    public long Resends => Interlocked.Read(ref _resends);

    private long _resends;
    private MqttClientOptions? _options;
    private ResiliencePipeline? _resend;

    private async Task PublishCountedAsync(string topic, byte[] payload, int count, bool health, CancellationToken ct)
    {
        if (ResendUntil is { } until)
        {
            _resend ??= new ResiliencePipelineBuilder().AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(e => e is not ConnectionRefusedException && (e is not OperationCanceledException || !until.IsCancellationRequested)),
                BackoffType = DelayBackoffType.Exponential, UseJitter = true, Delay = TimeSpan.FromMilliseconds(500), MaxDelay = TimeSpan.FromSeconds(5),
                MaxRetryAttempts = int.MaxValue,
            }).Build();
            var attempts = 0;
            // The pauses and reconnects end with `until`; a publish under way is only cut short by `ct`, so a batch sent
            // before the end still gets its PUBACK and is counted (what was acknowledged is what was produced).
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(until, ct);
            await _resend.ExecuteAsync(async token =>
            {
                if (++attempts == 2) Interlocked.Increment(ref _resends); // counted once per batch, at its first resend
                if (!_client.IsConnected) await ReconnectAsync(token).ConfigureAwait(false);
                await PublishAsync(topic, payload, retain: false, ct).ConfigureAwait(false);
            }, linked.Token).ConfigureAwait(false);
        }
        else
        {
            await PublishAsync(topic, payload, retain: false, ct).ConfigureAwait(false);
        }

        if (health) AckedHealth += count;
        else AckedTelemetry += count;
    }

    private async Task PublishAsync(string topic, byte[] payload, bool retain, CancellationToken ct)
    {
        var message = new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithRetainFlag(retain).Build();
        var result = await _client.PublishAsync(message, ct).ConfigureAwait(false);
        if (!result.IsSuccess) throw new IOException($"{Id}: broker refused a publish on {topic}: {result.ReasonCode}");
        // As the agent (Agent:Hub:RequireSubscriber): a batch the broker delivered to no hub (MQTT 5 reason 0x10, e.g. a
        // broker restarted before the hub subscribed again) is not counted as acknowledged.
        if (!retain && result.ReasonCode == MqttClientPublishReasonCode.NoMatchingSubscribers)
        {
            throw new IOException($"{Id}: the broker has no hub subscribed to {topic}: not delivered");
        }
    }

    public string Password => password;

    /// <summary>Subscribes to the device's desired state; <paramref name="handler"/> runs off MQTTnet's receive loop.</summary>
    public async Task FollowDesiredAsync(Func<Protocol.Packages.DesiredModel, Task> handler, CancellationToken ct)
    {
        _client.ApplicationMessageReceivedAsync += e =>
        {
            if (e.ApplicationMessage.Topic != Topics.StateDesired(Id)) return Task.CompletedTask;
            var desired = JsonSerializer.Deserialize(e.ApplicationMessage.Payload.ToArray(), Protocol.Json.ProtocolJsonContext.Default.DesiredModel);
            if (desired is not null) _ = Task.Run(() => handler(desired), CancellationToken.None);
            return Task.CompletedTask;
        };
        await _client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(Topics.StateDesired(Id), MqttQualityOfServiceLevel.AtLeastOnce).Build(), ct).ConfigureAwait(false);
    }

    /// <summary>Reports an update phase (retained), as the agent does.</summary>
    public Task ReportAsync(Protocol.Packages.ReportedState state, CancellationToken ct) =>
        PublishAsync(Topics.StateReported(Id), JsonSerializer.SerializeToUtf8Bytes(state, Protocol.Json.CompactJsonContext.Default.ReportedState), retain: true, ct);

    private byte[] Status(string state) => JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string> { ["state"] = state, ["boot"] = _boot });

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_client.IsConnected)
            {
                await PublishAsync(Topics.Status(Id), Status("offline"), retain: true, CancellationToken.None).ConfigureAwait(false);
                await _client.DisconnectAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or IOException or OperationCanceledException)
        {
        }

        _client.Dispose();
    }
}
