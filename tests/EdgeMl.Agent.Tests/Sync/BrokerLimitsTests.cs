using System.Text;
using System.Text.Json;
using EdgeMl.Agent.Outbox;
using EdgeMl.Agent.Sync;
using EdgeMl.Protocol.Wire;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Mqtt;
using Microsoft.Extensions.Logging;

namespace EdgeMl.Agent.Tests.Sync;

/// <summary>
/// The uplink against a broker that caps what it takes (Debian's mosquitto with a small <c>max_packet_size</c>, a
/// topic it does not let the device write): batches fit what the broker announced, a record that can never fit is
/// dropped and counted, and a failure that repeats after each successful connect backs off further every time.
/// </summary>
public sealed class BrokerLimitsTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static byte[] Record(int i, int size) => Encoding.UTF8.GetBytes($"{{\"i\":{i},\"pad\":\"{new string('x', size)}\"}}");

    [SkippableFact]
    public async Task Batches_are_cut_to_the_brokers_maximum_packet_size_and_a_record_that_cannot_fit_is_dropped_and_counted()
    {
        Skip.IfNot(Mosquitto.Available, "mosquitto is not installed (./build.sh test installs it)");
        using var broker = new Mosquitto(listenerOptions: "max_packet_size 8192").Start();
        using var sub = new MosquittoSub(broker.Port, "edgeml/tiny/#", "observer");
        using var box = new DeviceOutbox(_dir.File("agent.db"), new OutboxSettings());
        for (var i = 1; i <= 600; i++)
        {
            box.Append(RecordClass.Telemetry, Record(i, 300));
            if (i == 300) box.Append(RecordClass.Telemetry, Record(-1, 10_000)); // larger than any packet the broker takes
        }

        using var uplink = new Uplink(box, new HubSettings { Broker = broker.Url, DeviceId = "tiny", BatchSize = 200, ReconnectMinMs = 50, ReconnectMaxMs = 500 },
            TimeProvider.System, new ListLogger());
        using var cts = new CancellationTokenSource();
        var running = uplink.RunAsync(cts.Token);
        try
        {
            sub.WaitUntil(m => Records(m).Count >= 600, "600 records at the observer", 30_000);
        }
        finally
        {
            await cts.CancelAsync();
            await running.WaitAsync(TimeSpan.FromSeconds(10));
        }

        var batches = sub.Messages.Where(m => m.Topic == Topics.For(RecordClass.Telemetry, "tiny")).ToList();
        Assert.All(batches, b => Assert.True(Encoding.UTF8.GetByteCount(b.Payload) <= 8192 - 64, $"a batch of {b.Payload.Length} bytes"));
        Assert.True(batches.Count >= 600 * 330 / 8192, $"{batches.Count} batches");
        Assert.Equal(Enumerable.Range(1, 600), Records(sub.Messages).Order());
        var health = box.Health();
        Assert.Equal(1, health.DroppedTooLarge["telemetry"]);
        Assert.Equal(1, health.Dropped["telemetry"]);
        Assert.Equal(0, box.Stats().Depth[RecordClass.Telemetry]);
    }

    [SkippableFact]
    public async Task A_broker_that_accepts_the_connection_but_refuses_every_batch_is_retried_with_a_growing_backoff()
    {
        Skip.IfNot(Mosquitto.Available, "mosquitto is not installed (./build.sh test installs it)");
        // Anonymous clients may say they are online but not send telemetry: PUBACK "not authorized" on every batch.
        var acl = _dir.File("acl");
        File.WriteAllText(acl, "topic write edgeml/+/status\ntopic readwrite edgeml/+/state/#\ntopic read #\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(acl, (UnixFileMode)0x1A4);
        using var broker = new Mosquitto(listenerOptions: $"acl_file {acl}").Start();
        using var box = new DeviceOutbox(_dir.File("agent.db"), new OutboxSettings());
        box.Append(RecordClass.Telemetry, Record(1, 10));
        var log = new ListLogger();
        using var uplink = new Uplink(box, new HubSettings { Broker = broker.Url, DeviceId = "denied", ReconnectMinMs = 20, ReconnectMaxMs = 5_000 }, TimeProvider.System, log);
        using var cts = new CancellationTokenSource();
        var running = uplink.RunAsync(cts.Token);
        try
        {
            await Pipeline.Eventually.True(() => log.Lines.Any(l => l.Contains("(5 in a row)", StringComparison.Ordinal)), "the fifth failure in a row", 20_000);
        }
        finally
        {
            await cts.CancelAsync();
            await running.WaitAsync(TimeSpan.FromSeconds(10));
        }

        var downs = log.Lines.Where(l => l.Contains("in a row", StringComparison.Ordinal)).ToList();
        Assert.All(downs, d => Assert.Contains("NotAuthorized", d, StringComparison.Ordinal));
        Assert.Equal(1, box.Stats().Depth[RecordClass.Telemetry]); // nothing lost
    }

    private static List<int> Records(List<(string Topic, string Payload)> messages) =>
        messages.Where(m => m.Topic == Topics.For(RecordClass.Telemetry, "tiny"))
            .SelectMany(m => JsonDocument.Parse(m.Payload).RootElement.GetProperty("records").EnumerateArray())
            .Select(r => r.GetProperty("data").GetProperty("i").GetInt32())
            .ToList();

    /// <summary>Keeps every formatted log line.</summary>
    private sealed class ListLogger : ILogger
    {
        private readonly Lock _gate = new();
        private readonly List<string> _lines = [];

        public List<string> Lines
        {
            get { lock (_gate) return [.. _lines]; }
        }

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_gate) _lines.Add(formatter(state, exception));
        }
    }
}
