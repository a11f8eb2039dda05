using EdgeMl.FleetHub.Store;
using Npgsql;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// The PostgreSQL store's time partitions (schema version 5): records in one partition per day of their own time, a
/// default partition for times without one, retention by dropping days, and the migration of a version-4 database.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class PostgresPartitionTests(PostgresFixture postgres)
{
    private const long Day = 86_400_000;
    private readonly string _database = postgres.Cluster.CreateDatabase();
    private readonly DateTimeOffset _now = DateTimeOffset.UtcNow;

    private static IncomingRecord Rec(long seq, long at, string cls = "telemetry", string boot = "b1") => new(boot, seq, cls, at, $$"""{"n":{{seq}}}""");

    private T Scalar<T>(string sql, params object[] args)
    {
        using var c = new NpgsqlConnection(_database);
        c.Open();
        using var q = new NpgsqlCommand(sql, c);
        foreach (var a in args) q.Parameters.Add(new NpgsqlParameter { Value = a });
        return (T)q.ExecuteScalar()!;
    }

    private List<string> Column(string sql, params object[] args)
    {
        using var c = new NpgsqlConnection(_database);
        c.Open();
        using var q = new NpgsqlCommand(sql, c);
        foreach (var a in args) q.Parameters.Add(new NpgsqlParameter { Value = a });
        using var r = q.ExecuteReader();
        var list = new List<string>();
        while (r.Read()) list.Add(r.GetString(0));
        return list;
    }

    /// <summary>The partition a record of d1 was stored in.</summary>
    private string Where(long seq) => Scalar<string>("SELECT tableoid::regclass::text FROM records WHERE device = 'd1' AND seq = $1", seq);

    private static string DayName(DateTimeOffset t) => PostgresHubStore.PartitionName(Math.DivRem(t.ToUnixTimeMilliseconds(), Day).Quotient);

    [Fact]
    public void Records_go_to_the_partition_of_their_day_and_retention_drops_the_days_that_ended_before_the_cutoff()
    {
        using var store = PostgresHubStore.Open(_database, retentionDays: 60);
        var now = _now.ToUnixTimeMilliseconds();
        Assert.Equal(4, store.StoreBatches([("d1", [Rec(1, now - 35 * Day), Rec(2, now - 34 * Day), Rec(3, now - Day), Rec(4, now)])], _now));
        Assert.Equal(DayName(_now.AddDays(-35)), Where(1));
        Assert.Equal(DayName(_now), Where(4));
        Assert.Equal(4, store.Partitions().Count);

        var removed = store.RemoveRecordsBefore(_now.AddDays(-30));
        Assert.Equal(2, removed);
        Assert.Equal([4L, 3], store.Records("d1", 10).Select(r => r.Seq));
        var partitions = store.Partitions();
        Assert.DoesNotContain(DayName(_now.AddDays(-35)), partitions);
        Assert.Contains(DayName(_now.AddDays(1)), partitions); // made ahead by the retention leader
        Assert.Equal(0, store.StoreBatches([("d1", [Rec(3, now - Day), Rec(4, now)])], _now)); // still exactly once
    }

    [Fact]
    public void Implausible_times_go_to_the_default_partition_without_failing_the_batch_or_making_partitions()
    {
        using var store = PostgresHubStore.Open(_database);
        var now = _now.ToUnixTimeMilliseconds();
        // 1970, before 1970, a device clock in 2100, the largest time there is, 40 days back (older than retention), and now.
        long[] odd = [1000, -5_000, 4_102_444_800_000, long.MaxValue, now - 40 * Day];
        var batch = odd.Select((at, i) => Rec(i + 1, at)).Append(Rec(99, now)).ToList();
        Assert.Equal(6, store.StoreBatches([("d1", batch)], _now));
        Assert.All(Enumerable.Range(1, odd.Length), i => Assert.Equal("records_default", Where(i)));
        Assert.Equal(DayName(_now), Where(99));
        Assert.Equal([DayName(_now)], store.Partitions());
        Assert.Equal(0, store.StoreBatches([("d1", batch)], _now)); // the re-sent batch meets its first copies
        Assert.Equal(6, store.FindDevice("d1")!.Records);
        // The default partition is trimmed by the receive time.
        Assert.Equal(5, store.RemoveRecordsBefore(_now.AddSeconds(1)));
    }

    [Fact]
    public void One_batch_of_records_many_days_apart_makes_at_most_a_month_of_partitions_and_a_replica_at_most_100_a_day()
    {
        using var store = PostgresHubStore.Open(_database, retentionDays: 36_500);
        var now = _now.ToUnixTimeMilliseconds();
        // 1,000 records a day apart, in one batch: the newest 31 days get partitions, the others the default partition.
        var batch = Enumerable.Range(0, 1000).Select(i => Rec(i + 1, now - i * Day)).ToList();
        Assert.Equal(1000, store.StoreBatches([("d1", batch)], _now));
        Assert.Equal(Enumerable.Range(0, 31).Select(i => DayName(_now.AddDays(-i))).Order(), store.Partitions());
        Assert.Equal(DayName(_now.AddDays(-30)), Where(31));
        Assert.Equal("records_default", Where(32));
        Assert.Equal(0, store.StoreBatches([("d1", batch)], _now)); // exactly once across both

        // The same device again and again: at most 100 partitions made by ingest this day, then the default partition.
        for (var round = 1; round <= 20; round++)
        {
            var seq = 1000 + round * 10;
            store.StoreBatches([("d1", Enumerable.Range(0, 8).Select(i => Rec(seq + i, now - (1000 + round * 8 + i) * Day)).ToList())], _now);
        }

        Assert.Equal(100, store.Partitions().Count);
        Assert.Equal(1000 + 20 * 8, Scalar<long>("SELECT count(*) FROM records"));
    }

    [Fact]
    public void A_record_stored_in_the_default_partition_moves_with_its_day_when_the_partition_is_made_and_is_still_stored_once()
    {
        using var store = PostgresHubStore.Open(_database);
        var at = _now.AddDays(3).ToUnixTimeMilliseconds(); // too far ahead when it comes: no partition for it yet
        Assert.Equal(1, store.StoreBatches([("d1", [Rec(1, at)])], _now));
        Assert.Equal("records_default", Where(1));
        store.CreatePartitions(_now.AddDays(3), _now.AddDays(3));
        Assert.Equal(DayName(_now.AddDays(3)), Where(1));
        using var other = PostgresHubStore.Open(_database); // another replica, three days later: the day is plausible now
        Assert.Equal(0, other.StoreBatches([("d1", [Rec(1, at)])], _now.AddDays(3)));
        Assert.Equal(1L, Scalar<long>("SELECT count(*) FROM records"));
    }

    [Fact]
    public void Replicas_making_the_same_partitions_at_once_make_each_once_and_store_each_record_once()
    {
        using var a = PostgresHubStore.Open(_database);
        using var b = PostgresHubStore.Open(_database);
        var now = _now.ToUnixTimeMilliseconds();
        var stored = 0;
        Parallel.For(0, 2, replica =>
        {
            var store = replica == 0 ? a : b;
            for (var d = 0; d < 10; d++)
            {
                Interlocked.Add(ref stored, store.StoreBatches([("d1", [Rec(d, now - d * Day), Rec(100 + d, now - d * Day - 1)])], _now));
            }
        });
        Assert.Equal(20, stored);
        Assert.Equal(10, a.Partitions().Count);
    }

    [Fact]
    public void The_newest_records_and_a_time_range_are_read_from_the_key_in_the_partitions_they_need()
    {
        using var store = PostgresHubStore.Open(_database, retentionDays: 60);
        var now = _now.ToUnixTimeMilliseconds();
        var ats = Enumerable.Range(0, 40).Select(i => now - i * Day / 2).ToList();
        store.StoreBatches([("d1", ats.Select((at, i) => Rec(i, at)).ToList())], _now);
        Assert.Equal(ats.Select(at => Math.DivRem(at, Day).Quotient).Distinct().Count(), store.Partitions().Count);
        // Other devices' records, so that the planner weighs a table of some size (as a hub's is).
        using (var c = new NpgsqlConnection(_database))
        {
            c.Open();
            using var fill = new NpgsqlCommand("""
                INSERT INTO records (device, boot, class, seq, at, received, data)
                SELECT 'other-' || (s % 200), 'b1', 'telemetry', s, $1 - (s % 19000) * 86400, $1, '{"label":"normal"}' FROM generate_series(1, 200000) s
                """, c);
            fill.Parameters.Add(new NpgsqlParameter { Value = now });
            fill.ExecuteNonQuery();
            using var analyze = new NpgsqlCommand("ANALYZE records", c);
            analyze.ExecuteNonQuery();
        }

        Assert.Equal(Enumerable.Range(0, 5).Select(i => (long)i), store.Records("d1", 5, "telemetry").Select(r => r.Seq));
        Assert.Equal(Enumerable.Range(0, 5).Select(i => (long)i), store.Records("d1", 5).Select(r => r.Seq));
        var range = store.RecordsBetween("d1", "telemetry", _now.AddDays(-3), _now.AddDays(-2), 100);
        Assert.Equal([5L, 6], range.Select(r => r.Seq)); // newest first

        var newest = Column("EXPLAIN SELECT boot, seq FROM records WHERE device = 'd1' AND class = 'telemetry' ORDER BY at DESC, boot DESC, seq DESC LIMIT 100");
        Assert.DoesNotContain(newest, l => l.Contains("Seq Scan", StringComparison.Ordinal) || l.Contains("Sort  (", StringComparison.Ordinal));
        // The store reads the last two days first: pruned to their partitions (at most three days) and the default one.
        var recent = Column($"EXPLAIN SELECT boot, seq FROM records WHERE device = 'd1' AND class = 'telemetry' AND at >= {now - 2 * Day} AND at < {long.MaxValue} ORDER BY at DESC, boot DESC, seq DESC LIMIT 100");
        Assert.InRange(recent.SelectMany(l => System.Text.RegularExpressions.Regex.Matches(l, "records_(default|[0-9]{8})").Select(m => m.Value)).Distinct().Count(), 2, 4);
        var day = DayName(_now.AddDays(-3));
        var lo = Math.DivRem(_now.AddDays(-3).ToUnixTimeMilliseconds(), Day).Quotient * Day;
        var between = Column($"EXPLAIN SELECT boot, seq FROM records WHERE device = 'd1' AND class = 'telemetry' AND at >= {lo + 1} AND at < {lo + Day - 1} ORDER BY at DESC LIMIT 100");
        Assert.Contains(between, l => l.Contains(day, StringComparison.Ordinal));
        Assert.DoesNotContain(between, l => l.Contains("Seq Scan", StringComparison.Ordinal));
        // Pruned to that one day: no other partition in the plan.
        Assert.Equal([day], between.SelectMany(l => System.Text.RegularExpressions.Regex.Matches(l, "records_(default|[0-9]{8})").Select(m => m.Value)).Distinct());

        // Every class at once (GET /api/devices/{id}/records?since=&until=): the same records, and each read of the
        // statement the store runs is pruned to that day as well.
        Assert.Equal([5L, 6], store.RecordsBetween("d1", null, _now.AddDays(-3), _now.AddDays(-2), 100).Select(r => r.Seq));
        var everyClass = Column("EXPLAIN " + PostgresHubStore.EveryClassSql, "d1", 100, lo + 1, lo + Day - 1);
        Assert.Equal([day], everyClass.SelectMany(l => System.Text.RegularExpressions.Regex.Matches(l, "records_(default|[0-9]{8})").Select(m => m.Value)).Distinct());
        Assert.DoesNotContain(everyClass, l => l.Contains("Seq Scan", StringComparison.Ordinal));
    }

    [Fact]
    public void Migration_5_moves_a_version_4_databases_records_into_day_partitions_and_keeps_exactly_once()
    {
        PostgresHubStore.MigrateTo(_database, 4);
        var now = _now.ToUnixTimeMilliseconds();
        using (var c = new NpgsqlConnection(_database))
        {
            c.Open();
            using var insert = new NpgsqlCommand("""
                INSERT INTO records (device, boot, class, seq, at, received, data)
                SELECT 'd1', 'b1', CASE WHEN s % 10 = 0 THEN 'health' ELSE 'telemetry' END, s, $1 - s * 3600000, $1, '{}' FROM generate_series(1, 100) s
                UNION ALL SELECT 'd1', 'b0', 'telemetry', 1, 5, $1, '{}'
                """, c);
            insert.Parameters.Add(new NpgsqlParameter { Value = now });
            Assert.Equal(101, insert.ExecuteNonQuery());
        }

        // Two replicas of the new hub start at once on it: one migrates, the other waits and finds the latest version (5 and after it).
        var stores = new PostgresHubStore[2];
        Parallel.For(0, 2, i => stores[i] = PostgresHubStore.Open(_database));
        try
        {
            Assert.All(stores, s => Assert.Equal(PostgresHubStore.LatestSchemaVersion, s.SchemaVersion()));
            Assert.Equal(101L, Scalar<long>("SELECT count(*) FROM records"));
            Assert.Equal(1L, Scalar<long>("SELECT count(*) FROM records_default")); // its time, 1970, has no day
            var days = Enumerable.Range(1, 100).Select(s => Math.DivRem(now - s * 3_600_000L, Day).Quotient).Distinct().Count();
            Assert.Equal(days, stores[0].Partitions().Count); // 100 hours back: five or six days
            Assert.Equal("records", Scalar<string>("SELECT relname::text FROM pg_class WHERE relname = 'records' AND relkind = 'p'"));
            Assert.Equal(0L, Scalar<long>("SELECT count(*) FROM pg_class WHERE relname = 'records_v4'"));
            var again = Enumerable.Range(1, 100).Select(s => Rec(s, now - s * 3_600_000L, s % 10 == 0 ? "health" : "telemetry")).Append(Rec(1, 5, boot: "b0")).ToList();
            Assert.Equal(0, stores[1].StoreBatches([("d1", again)], _now));
            Assert.Equal([1L, 2, 3], stores[1].Records("d1", 3).Select(r => r.Seq));
        }
        finally
        {
            foreach (var s in stores) s?.Dispose();
        }
    }
}
