using EdgeMl.FleetHub.Store;
using EdgeMl.TestUtilities;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// What every hub store must do (<see cref="IHubStore"/>); each store runs these through a subclass. Real files:
/// LiteDB on disk here, PostgreSQL when it comes.
/// </summary>
public abstract class HubStoreContractTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly DateTimeOffset _now = new(2026, 11, 27, 8, 0, 0, TimeSpan.Zero);

    protected abstract IHubStore Open(string directory);

    private IHubStore? _store;

    private IHubStore Store => _store ??= Open(_dir.Path);

    private void Reopen()
    {
        _store?.Dispose();
        _store = Open(_dir.Path);
    }

    private static List<IncomingRecord> Batch(string boot, string cls, params long[] seqs) =>
        seqs.Select(s => new IncomingRecord(boot, s, cls, 1000 + s, $$"""{"n":{{s}}}""")).ToList();

    private int Store1(string device, List<IncomingRecord> records) => Store.StoreBatches([(device, records)], _now);

    private List<long> Seqs(string device, string cls = "telemetry") =>
        Store.Records(device, 100_000, cls).Select(r => r.Seq).Order().ToList();

    [Fact]
    public void Each_record_is_stored_once_however_often_it_comes_and_survives_a_reopen()
    {
        Assert.Equal(3, Store1("d1", Batch("b1", "telemetry", 1, 2, 3)));
        Assert.Equal(0, Store1("d1", Batch("b1", "telemetry", 1, 2, 3)));
        Assert.Equal(1, Store1("d1", Batch("b1", "telemetry", 2, 3, 4)));
        Reopen();
        Assert.Equal(0, Store1("d1", Batch("b1", "telemetry", 1, 4)));
        Assert.Equal([1, 2, 3, 4], Seqs("d1"));
        Assert.Equal(4, Store.FindDevice("d1")!.Records);
    }

    [Fact]
    public void Live_records_before_the_backlog_of_the_same_boot_lose_nothing()
    {
        // After an outage the device sends what it measures now (101-110) before its backlog (1-100).
        Assert.Equal(10, Store1("d1", Batch("b1", "telemetry", Enumerable.Range(101, 10).Select(i => (long)i).ToArray())));
        Assert.Equal(50, Store1("d1", Batch("b1", "telemetry", Enumerable.Range(1, 50).Select(i => (long)i).ToArray())));
        Assert.Equal(3, Store1("d1", Batch("b1", "telemetry", 111, 112, 113)));
        Reopen();
        Assert.Equal(50, Store1("d1", Batch("b1", "telemetry", Enumerable.Range(51, 50).Select(i => (long)i).ToArray())));
        Assert.Equal(0, Store1("d1", Batch("b1", "telemetry", Enumerable.Range(1, 113).Select(i => (long)i).ToArray())));
        Assert.Equal(Enumerable.Range(1, 113).Select(i => (long)i), Seqs("d1"));
    }

    [Fact]
    public void Boots_classes_and_devices_are_counted_apart_and_a_group_commit_keeps_each_batch()
    {
        var stored = Store.StoreBatches(
        [
            ("d1", Batch("b1", "telemetry", 1, 2)),
            ("d2", Batch("b1", "telemetry", 1, 2)),
            ("d1", Batch("b2", "telemetry", 1)),
            ("d1", Batch("b1", "health", 1)),
            ("d1", Batch("b1", "telemetry", 2, 3)),
        ], _now);
        Assert.Equal(7, stored);
        Assert.Equal([1, 1, 2, 3], Seqs("d1"));
        Assert.Equal([1, 2], Seqs("d2"));
        Assert.Equal([1], Seqs("d1", "health"));
        Assert.Equal(5, Store.FindDevice("d1")!.Records);
    }

    [Fact]
    public void Enrollment_goes_pending_enrolled_revoked_and_passwords_are_checked()
    {
        Store.CreateEnrollment("d1", "line-a", new Dictionary<string, string> { ["site"] = "berlin" }, "tokenhash", _now.AddHours(1), _now);
        Assert.Equal("pending", Store.FindDevice("d1")!.Enrollment);
        Assert.Null(Store.ClaimEnrollment("tokenhash", Security.Secrets.Hash("pw"), _now.AddHours(2))); // expired
        Assert.Equal("d1", Store.ClaimEnrollment("tokenhash", Security.Secrets.Hash("pw"), _now));
        Assert.Null(Store.ClaimEnrollment("tokenhash", Security.Secrets.Hash("pw2"), _now)); // once only
        Assert.Equal(DeviceAccess.Allowed, Store.CheckDevice("d1", "pw"));
        Assert.Equal(DeviceAccess.BadPassword, Store.CheckDevice("d1", "pw2"));
        Assert.Equal(DeviceAccess.Unknown, Store.CheckDevice("d9", "pw"));
        Assert.Throws<InvalidOperationException>(() => Store.CreateEnrollment("d1", null, new Dictionary<string, string>(), "t2", _now.AddHours(1), _now));
        Assert.True(Store.Revoke("d1", _now));
        Reopen();
        Assert.Equal(DeviceAccess.Revoked, Store.CheckDevice("d1", "pw"));
        var d = Store.FindDevice("d1")!;
        Assert.Equal(("revoked", "line-a", "berlin"), (d.Enrollment, d.Group, d.Tags["site"]));
    }

    public void Dispose()
    {
        _store?.Dispose();
        _dir.Dispose();
    }
}

public sealed class LiteDbHubStoreTests : HubStoreContractTests
{
    protected override IHubStore Open(string directory) => new LiteDbHubStore(directory);
}

public sealed class SeqSetTests
{
    [Fact]
    public void Any_order_with_repeats_stores_each_number_once_and_ends_as_one_watermark()
    {
        var random = new Random(42);
        for (var round = 0; round < 200; round++)
        {
            var n = random.Next(1, 300);
            var arrivals = Enumerable.Range(1, n).Select(i => (long)i).Concat(Enumerable.Range(0, n / 3).Select(_ => (long)random.Next(1, n + 1)))
                .OrderBy(_ => random.Next()).ToList();
            var set = new SeqSet(0);
            var added = arrivals.Count(set.Add);
            Assert.Equal(n, added);
            Assert.Equal(n, set.Watermark);
            Assert.Empty(set.Ranges);
        }
    }

    [Fact]
    public void Early_ranges_are_kept_apart_until_the_gap_fills()
    {
        var set = new SeqSet(10);
        Assert.True(set.Add(15));
        Assert.True(set.Add(16));
        Assert.True(set.Add(20));
        Assert.Equal([(15L, 16L), (20L, 20L)], set.Ranges);
        Assert.False(set.Add(16));
        Assert.False(set.Add(9));
        foreach (var s in new long[] { 11, 12, 13, 14 }) Assert.True(set.Add(s));
        Assert.Equal(16, set.Watermark);
        Assert.Equal([(20L, 20L)], set.Ranges);
    }
}
