using System.Text;
using EdgeMl.Agent.Outbox;
using EdgeMl.Protocol.Wire;
using EdgeMl.TestUtilities;
using LiteDB;

namespace EdgeMl.Agent.Tests.Outbox;

/// <summary>The outbox stays cheap when large: indexed look-ups, and a file that gives its high-water size back.</summary>
public class OutboxShrinkTests
{
    private static byte[] Payload(int i, int size) => Encoding.UTF8.GetBytes($"{{\"i\":{i}}}".PadRight(size, ' '));

    [Fact]
    public void A_large_outbox_that_empties_shrinks_its_file_and_keeps_what_still_waits_and_its_counters()
    {
        using var dir = new TempDirectory();
        var path = dir.File("agent.db");
        using var box = new DeviceOutbox(path, new OutboxSettings { MaxBytes = 7_000_000 });
        // ~8 MB offered to a 7 MB budget: the oldest telemetry is dropped (counted), the file grows past 7 MB.
        for (var i = 0; i < 800; i++) box.Append(RecordClass.Telemetry, Payload(i, 10_000));
        var alert = box.Append(RecordClass.Alert, Payload(-1, 100));
        var dropped = box.Stats().Dropped[RecordClass.Telemetry];
        Assert.True(dropped > 0);
        var high = box.FileBytes;
        Assert.True(high > 7_000_000, $"file {high} B");
        Assert.Equal(0, box.Shrink()); // full, not empty: nothing to give back

        // Delivered, all but the alert and the two newest telemetry records.
        var waiting = box.Peek(1000);
        var keep = waiting.Where(r => r.Class == RecordClass.Alert).Concat(waiting.Where(r => r.Class == RecordClass.Telemetry).TakeLast(2)).ToList();
        box.Acknowledge(waiting.Except(keep).Select(r => r.Id));
        Assert.Equal(high, box.FileBytes, tolerance: 1_000_000); // LiteDB does not shorten its file by itself

        var freed = box.Shrink();
        Assert.True(freed > high - 1_000_000, $"freed {freed} of {high} B");
        Assert.True(box.FileBytes < 1_000_000, $"file {box.FileBytes} B after the shrink");
        Assert.True(new FileInfo(path).Length < 1_000_000);
        Assert.False(File.Exists(dir.File("agent-shrink.db")));

        // What waits is there, with its identity; the counters survived; the store goes on numbering.
        var after = box.Peek(10);
        Assert.Equal(keep.Select(r => (r.Id, r.BootId, r.Seq)), after.Select(r => (r.Id, r.BootId, r.Seq)));
        Assert.Equal(keep.Select(r => Encoding.UTF8.GetString(r.Payload)), after.Select(r => Encoding.UTF8.GetString(r.Payload)));
        Assert.Equal(alert, after[0].Seq);
        Assert.Equal(dropped, box.Stats().Dropped[RecordClass.Telemetry]);
        Assert.Equal(20_000 + 100, box.Stats().Bytes);
        var next = box.Append(RecordClass.Health, Payload(1, 10));
        Assert.Equal(802, next);
        Assert.True(box.Peek(10).Single(r => r.Class == RecordClass.Health).Id > keep.Max(r => r.Id));

        // Reopened (the next start): the shrunk file is a whole outbox.
        box.Dispose();
        using var reopened = new DeviceOutbox(path, new OutboxSettings { MaxBytes = 7_000_000 });
        Assert.Null(reopened.MovedAside);
        Assert.Equal(4, reopened.Peek(10).Count);
        Assert.Equal(dropped, reopened.Stats().Dropped[RecordClass.Telemetry]);
    }

    [Fact]
    public void Shrinking_is_throttled_and_skipped_for_a_small_file()
    {
        using var dir = new TempDirectory();
        using var box = new DeviceOutbox(dir.File("agent.db"), new OutboxSettings(), logger: null) { ShrinkEvery = TimeSpan.FromHours(1) };
        for (var i = 0; i < 50; i++) box.Append(RecordClass.Telemetry, Payload(i, 1000));
        box.Acknowledge(box.Peek(100).Select(r => r.Id));
        Assert.Equal(0, box.Shrink()); // empty but small: not worth a rewrite

        for (var round = 0; round < 2; round++)
        {
            for (var i = 0; i < 600; i++) box.Append(RecordClass.Telemetry, Payload(i, 10_000));
            box.Acknowledge(box.Peek(1000).Select(r => r.Id));
            var freed = box.Shrink();
            if (round == 0) Assert.True(freed > 4_000_000, $"freed {freed} B");
            else Assert.Equal(0, freed); // within the hour of the last shrink
        }
    }

    [Fact]
    public void Expire_and_the_oldest_record_are_found_through_indexes_not_a_scan()
    {
        using var dir = new TempDirectory();
        var path = dir.File("agent.db");
        using (var box = new DeviceOutbox(path, new OutboxSettings()))
        {
            for (var i = 0; i < 20; i++) box.Append(RecordClass.Telemetry, Payload(i, 10));
        }

        using var db = new LiteDatabase(new ConnectionString { Filename = path, ReadOnly = true });
        var indexes = db.Execute("SELECT $ FROM $indexes WHERE collection = 'outbox'").ToEnumerable().Select(d => d["name"].AsString).ToList();
        Assert.Contains("k", indexes);
        Assert.Contains("t", indexes);
        // The plans of what Expire (t below a cutoff) and Stats (lowest t) ask for: an index seek on t, not a full scan.
        var expirePlan = db.Execute("EXPLAIN SELECT $ FROM outbox WHERE $.t < 5").First().AsDocument;
        Assert.Equal("t", expirePlan["index"]["name"].AsString);
        var oldestPlan = db.Execute("EXPLAIN SELECT $ FROM outbox ORDER BY $.t LIMIT 1").First().AsDocument;
        Assert.Equal("t", oldestPlan["index"]["name"].AsString);
    }
}
