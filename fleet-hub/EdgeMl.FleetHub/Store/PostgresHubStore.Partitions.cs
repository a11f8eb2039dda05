using System.Globalization;
using Npgsql;

namespace EdgeMl.FleetHub.Store;

/// <summary>
/// The records table's time partitions (schema version 5): <c>records</c> is range-partitioned on the device's own
/// time <c>at</c> (Unix ms), one partition per UTC day named <c>records_YYYYMMDD</c>, plus <c>records_default</c> for
/// every time that has no day partition.
/// <list type="bullet">
/// <item>Ingest creates the partitions of the days a batch needs when they are plausible: from <c>RetentionDays</c>
/// before the receive time (400 days when records are kept for ever) to one day after it (what the hub itself
/// flags as an implausible time). Any other time goes to the default partition: a device with a broken clock costs
/// neither a failed batch nor thousands of partitions. Ingest makes at most <see cref="MaxNewPartitionsPerBatch"/>
/// partitions per batch (the newest days first) and <see cref="MaxNewPartitionsPerDay"/> per replica and UTC day; the
/// records of the days left out go to the default partition too (and move when their day's partition is made).</item>
/// <item>The retention leader creates today's and tomorrow's partitions ahead (<see cref="RemoveRecordsBefore"/>) and
/// drops the day partitions that ended before the cutoff (a whole partition: no row-by-row delete, no bloat); the
/// default partition is trimmed by the receive time through its own index.</item>
/// <item>A new partition takes over the rows the default partition holds for its day in the same transaction, so a
/// record stored there (a time that was too far ahead then) still meets its re-sent copy: exactly once holds.</item>
/// </list>
/// Partition changes are serialised between replicas by a transaction-level advisory lock.
/// </summary>
public sealed partial class PostgresHubStore
{
    /// <summary>One day in milliseconds: the width of a partition.</summary>
    internal const long DayMs = 86_400_000;

    /// <summary>How far back ingest creates partitions when records are kept for ever (days).</summary>
    internal const int KeepForeverHorizonDays = 400;

    /// <summary>
    /// Most day partitions one ingest batch makes (a month: a slow device's backlog after weeks offline): one batch of
    /// records a day apart cannot make hundreds.
    /// </summary>
    internal const int MaxNewPartitionsPerBatch = 31;

    /// <summary>Most day partitions ingest makes per replica and UTC day (of the receive time): a device sending such batches over and over is bounded too.</summary>
    internal const int MaxNewPartitionsPerDay = 100;

    /// <summary>The UTC day <see cref="_madeOnDay"/> counts for, and the partitions ingest made on it.</summary>
    private long _budgetDay = long.MinValue;
    private int _madeOnDay;

    /// <summary>Key of the advisory lock that serialises partition changes between replicas.</summary>
    private const long PartitionLock = 0x45444745_4d4c0002; // "EDGEML" + 2

    private readonly Lock _partitionGate = new();

    /// <summary>The days (Unix ms / <see cref="DayMs"/>) known to have a partition; loaded lazily, refreshed after each change.</summary>
    private HashSet<long>? _partitionDays;

    /// <summary>How far back (ms before the receive time) ingest creates a missing day partition.</summary>
    private long HorizonMs => (long)((_retentionDays > 0 ? _retentionDays : KeepForeverHorizonDays) * DayMs);

    /// <summary>The partition of a day (Unix ms / 86,400,000): <c>records_YYYYMMDD</c> (UTC).</summary>
    public static string PartitionName(long day) =>
        "records_" + DateTimeOffset.FromUnixTimeMilliseconds(day * DayMs).ToString("yyyyMMdd", CultureInfo.InvariantCulture);

    private static long Day(long atMs) => Math.DivRem(atMs, DayMs) is var (q, r) && r < 0 ? q - 1 : q;

    /// <summary>The day partitions that exist now, as days; null names (the default partition) left out.</summary>
    private static HashSet<long> ReadPartitionDays(NpgsqlConnection c, NpgsqlTransaction? t)
    {
        var days = new HashSet<long>();
        using var q = Command(c, t, """
            SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid
            WHERE i.inhparent = 'records'::regclass AND p.relname ~ '^records_[0-9]{8}$'
            """);
        using var r = q.ExecuteReader();
        while (r.Read())
        {
            if (DateTimeOffset.TryParseExact(r.GetString(0)["records_".Length..], "yyyyMMdd", CultureInfo.InvariantCulture,
                    DateTimeStyles.AssumeUniversal, out var date))
            {
                days.Add(Day(date.ToUnixTimeMilliseconds()));
            }
        }

        return days;
    }

    /// <summary>
    /// The plausible days of <paramref name="ats"/> (see the type's remarks) that have no partition in this replica's
    /// view, at most the batch's and the day's share of new partitions (the newest days first); empty in the common case
    /// (one pass over the times, a set look-up per change of day).
    /// </summary>
    private List<long> MissingDays(long[] ats, long received)
    {
        var missing = new List<long>();
        HashSet<long> known;
        lock (_partitionGate) known = _partitionDays ??= Run(c => ReadPartitionDays(c, null));
        var lo = received - HorizonMs;
        var hi = received + DayMs;
        var last = long.MinValue;
        foreach (var at in ats)
        {
            if (at < lo || at >= hi) continue;
            var day = Day(at);
            if (day == last) continue;
            last = day;
            if (!known.Contains(day) && !missing.Contains(day)) missing.Add(day);
        }

        if (missing.Count == 0) return missing;
        lock (_partitionGate)
        {
            if (_budgetDay != Day(received)) (_budgetDay, _madeOnDay) = (Day(received), 0);
            var take = Math.Min(MaxNewPartitionsPerBatch, MaxNewPartitionsPerDay - _madeOnDay);
            if (take <= 0) return [];
            var chosen = missing.OrderDescending().Take(take).ToList();
            _madeOnDay += chosen.Count;
            return chosen;
        }
    }

    /// <summary>
    /// Creates the partitions of <paramref name="days"/> that do not exist yet (another replica may have made them),
    /// each taking over the default partition's rows of its day, in one transaction under the partition lock; refreshes
    /// this replica's view. A partition is a plain table attached with <c>ATTACH PARTITION</c>, which (unlike
    /// <c>CREATE TABLE … PARTITION OF</c>) does not block ingest into the other partitions meanwhile.
    /// </summary>
    private void CreatePartitions(IReadOnlyCollection<long> days) => Run(c =>
    {
        using var t = c.BeginTransaction();
        Exec(c, t, "SET LOCAL lock_timeout = '30s'");
        Exec(c, t, "SELECT pg_advisory_xact_lock($1)", PartitionLock);
        var existing = ReadPartitionDays(c, t);
        foreach (var day in days.Where(d => !existing.Contains(d)).Order())
        {
            var name = PartitionName(day);
            var (lo, hi) = (day * DayMs, (day + 1) * DayMs);
            Exec(c, t, $"CREATE TABLE {name} (LIKE records)");
            Exec(c, t, $"""
                WITH moved AS (DELETE FROM records_default WHERE at >= {lo} AND at < {hi} RETURNING device, boot, class, seq, at, received, data)
                INSERT INTO {name} (device, boot, class, seq, at, received, data) SELECT * FROM moved
                """);
            Exec(c, t, $"ALTER TABLE records ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})");
            existing.Add(day);
        }

        t.Commit();
        lock (_partitionGate) _partitionDays = existing;
    });

    /// <summary>
    /// Creates the day partitions from <paramref name="from"/> to <paramref name="until"/> (both days included) that do
    /// not exist yet. The retention leader calls it for today and tomorrow; a bulk load or a restore calls it for the
    /// days it brings.
    /// </summary>
    /// <exception cref="IOException">The database cannot be reached.</exception>
    public void CreatePartitions(DateTimeOffset from, DateTimeOffset until)
    {
        var days = new List<long>();
        for (var d = Day(from.ToUnixTimeMilliseconds()); d <= Day(until.ToUnixTimeMilliseconds()); d++) days.Add(d);
        CreatePartitions(days);
    }

    /// <summary>The day partitions there are now, oldest first (for tests and diagnostics).</summary>
    public List<string> Partitions() => Run(c => ReadPartitionDays(c, null).Order().Select(PartitionName).ToList());

    /// <summary>
    /// Drops the day partitions whose day ended at or before <paramref name="cutoffMs"/>, one transaction each (a
    /// <c>DROP TABLE</c> of a partition waits for the queries on the records table to end, and holds new ones back for
    /// that moment: <c>lock_timeout</c> bounds the wait, and a pass that times out is tried again at the next).
    /// Returns the rows they held (PostgreSQL's count after the last <c>ANALYZE</c>, exact for small partitions).
    /// </summary>
    private long DropPartitionsBefore(NpgsqlConnection c, long cutoffMs)
    {
        long removed = 0;
        foreach (var day in ReadPartitionDays(c, null).Where(d => (d + 1) * DayMs <= cutoffMs).Order())
        {
            var name = PartitionName(day);
            using var t = c.BeginTransaction();
            Exec(c, t, "SET LOCAL lock_timeout = '10s'");
            Exec(c, t, "SELECT pg_advisory_xact_lock($1)", PartitionLock);
            using (var q = Command(c, t, "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)", name))
            {
                if (q.ExecuteScalar() is not long estimate) continue; // another replica dropped it meanwhile
                if (estimate < 100_000)
                {
                    // Never analysed (-1), or small: count it.
                    using var count = Command(c, t, $"SELECT count(*) FROM {name}");
                    estimate = (long)count.ExecuteScalar()!;
                }

                removed += estimate;
            }

            Exec(c, t, $"DROP TABLE IF EXISTS {name}");
            t.Commit();
        }

        lock (_partitionGate) _partitionDays = null; // read again at the next batch (a set once shared is never changed)

        return removed;
    }
}
