using System.Buffers;
using System.Reflection;
using System.Text;
using EdgeMl.FleetHub.Ingest;
using EdgeMl.FleetHub.Store;
using EdgeMl.TestUtilities;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// The single store writer never dies: a real LiteDB store with a fault injected for one device's batches (a poison
/// batch that throws, a disk that fails), while other devices' batches go through the same writer.
/// </summary>
public sealed class IngestWriterTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    /// <summary>Forwards every call to a real store; <c>StoreBatches</c> throws for batches of the named devices.</summary>
    public class FaultyStore : DispatchProxy
    {
        public IHubStore Inner { get; set; } = null!;
        public Func<string, Exception?> FaultFor { get; set; } = _ => null;
        public int Calls;

        public static (IHubStore Store, FaultyStore Faults) Over(IHubStore inner)
        {
            var store = DispatchProxy.Create<IHubStore, FaultyStore>();
            var faulty = (FaultyStore)(object)store;
            faulty.Inner = inner;
            return (store, faulty);
        }

        protected override object? Invoke(MethodInfo? method, object?[]? args)
        {
            if (method!.Name == nameof(IHubStore.StoreBatches))
            {
                Interlocked.Increment(ref Calls);
                var batches = (IReadOnlyList<(string Device, IReadOnlyList<IncomingRecord> Records)>)args![0]!;
                foreach (var (device, _) in batches)
                {
                    if (FaultFor(device) is { } e) throw e;
                }
            }

            try
            {
                return method.Invoke(Inner, args);
            }
            catch (TargetInvocationException e) when (e.InnerException is not null)
            {
                throw e.InnerException;
            }
        }
    }

    private static ReadOnlySequence<byte> Batch(string device, int seq) => new(Encoding.UTF8.GetBytes(
        $$$"""{"device":"{{{device}}}","records":[{"boot":"b1","seq":{{{seq}}},"class":"telemetry","at":{{{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}}},"data":{"score":0.5}}]}"""));

    [Fact]
    public async Task A_batch_that_fails_on_its_own_is_quarantined_the_others_in_its_group_are_stored_and_the_writer_goes_on()
    {
        using var real = new LiteDbHubStore(_dir.Path);
        var (store, faulty) = FaultyStore.Over(real);
        faulty.FaultFor = d => d == "poison" ? new InvalidOperationException("a bug the poison batch trips") : null;
        await using var ingest = new TelemetryIngest(store, TimeProvider.System, NullLogger<TelemetryIngest>.Instance);

        // Many devices at once, so the poison batch shares group commits with good ones.
        var tasks = Enumerable.Range(1, 20).Select(i => ingest.HandleAsync($"good-{i}", "tele", Batch($"good-{i}", 1)))
            .Append(ingest.HandleAsync("poison", "tele", Batch("poison", 1))).ToList();
        var outcomes = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.All(outcomes, o => Assert.Equal(IngestOutcome.Stored, o)); // all acknowledged: the poison one is not re-queued
        for (var i = 1; i <= 20; i++) Assert.Single(real.Records($"good-{i}", 10));
        Assert.Empty(real.Records("poison", 10));
        var q = Assert.Single(real.Quarantined("poison", 10));
        Assert.Contains("a bug the poison batch trips", q.Reason, StringComparison.Ordinal);
        Assert.Contains("\"seq\":1", q.RecordsJson, StringComparison.Ordinal);
        Assert.Equal(1, ingest.Stats().Quarantined);

        // The writer is alive: the next batches are stored.
        Assert.Equal(IngestOutcome.Stored, await ingest.HandleAsync("good-1", "tele", Batch("good-1", 2)).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(2, real.Records("good-1", 10).Count);
    }

    [Fact]
    public async Task When_the_store_cannot_write_the_batch_is_not_acknowledged_and_not_quarantined()
    {
        using var real = new LiteDbHubStore(_dir.Path);
        var (store, faulty) = FaultyStore.Over(real);
        var full = true;
        faulty.FaultFor = d => full && d == "dev-1" ? new IOException("No space left on device") : null;
        await using var ingest = new TelemetryIngest(store, TimeProvider.System, NullLogger<TelemetryIngest>.Instance);

        Assert.Equal(IngestOutcome.Retry, await ingest.HandleAsync("dev-1", "tele", Batch("dev-1", 1)).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Empty(real.Quarantined(null, 10));
        full = false; // space came back: the device sends the same batch again
        Assert.Equal(IngestOutcome.Stored, await ingest.HandleAsync("dev-1", "tele", Batch("dev-1", 1)).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Single(real.Records("dev-1", 10));
    }

    public void Dispose() => _dir.Dispose();
}
