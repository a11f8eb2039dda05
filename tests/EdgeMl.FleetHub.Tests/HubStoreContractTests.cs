using Npgsql;
using EdgeMl.FleetHub.Store;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Postgres;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// What every hub store must do (<see cref="IHubStore"/>); each store runs these through a subclass. Real stores:
/// LiteDB on disk, and PostgreSQL in a throwaway cluster (<see cref="PostgresCluster"/>) with a database per test.
/// </summary>
public abstract partial class HubStoreContractTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly DateTimeOffset _now = new(2026, 11, 27, 8, 0, 0, TimeSpan.Zero);

    protected abstract IHubStore Open(string directory);

    private IHubStore? _store;

    protected IHubStore Store => _store ??= Open(_dir.Path);

    protected void Reopen()
    {
        _store?.Dispose();
        _store = Open(_dir.Path);
    }

    protected static List<IncomingRecord> Batch(string boot, string cls, params long[] seqs) =>
        seqs.Select(s => new IncomingRecord(boot, s, cls, 1000 + s, $$"""{"n":{{s}}}""")).ToList();

    private int Store1(string device, List<IncomingRecord> records) => Store.StoreBatches([(device, records)], _now);

    private List<long> Seqs(string device, string cls = "telemetry") =>
        Store.Records(device, 100_000, cls).Select(r => r.Seq).Order().ToList();

    [Fact]
    public void A_dashboard_session_is_found_until_it_expires_or_is_removed_and_survives_a_reopen()
    {
        var session = new DashboardSession("id-hash-1", "token-hash-1", "csrf-1", _now, _now.AddHours(12));
        Store.AddSession(session, _now);
        Store.AddSession(session with { IdHash = "id-hash-2", Expires = _now.AddMinutes(1) }, _now);
        Reopen();
        Assert.Equal(session, Store.FindSession("id-hash-1", _now.AddHours(1)));
        Assert.Null(Store.FindSession("id-hash-1", _now.AddHours(12)));
        Assert.Null(Store.FindSession("id-hash-2", _now.AddMinutes(2)));
        Assert.Null(Store.FindSession("no-such", _now));
        Store.RemoveSession("id-hash-1");
        Assert.Null(Store.FindSession("id-hash-1", _now));
    }

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
    public void A_batch_twice_in_one_group_commit_is_stored_once()
    {
        // A broker re-delivery that reaches the writer while the first copy still waits for its commit.
        Assert.Equal(3, Store.StoreBatches([("d1", Batch("b1", "telemetry", 1, 2)), ("d2", Batch("b1", "telemetry", 1)), ("d1", Batch("b1", "telemetry", 1, 2))], _now));
        Assert.Equal([1, 2], Seqs("d1"));
        Assert.Equal(2, Store.FindDevice("d1")!.Records);
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

    [Fact]
    public void Records_come_newest_first_limited_and_by_class_and_health_updates_the_registry()
    {
        Store.StoreBatches([("d1", Batch("b1", "telemetry", 1, 2, 3))], _now);
        Store.StoreBatches([("d1", [new IncomingRecord("b1", 1, "health", 5000, """{"model":{"name":"vib","version":"1.2","latencyP99Ms":3.5}}""")])], _now);
        // The device's clock runs forward: arrival order (LiteDB) and the device's own time (PostgreSQL) agree.
        Store.StoreBatches([("d1", [new IncomingRecord("b1", 4, "telemetry", 6004, """{"n":4}"""), new IncomingRecord("b1", 5, "telemetry", 6005, """{"n":5}""")])], _now);
        Assert.Equal([5L, 4, 1], Store.Records("d1", 3).Select(r => r.Seq));
        Assert.Equal(["telemetry", "telemetry", "health", "telemetry"], Store.Records("d1", 4).Select(r => r.Class));
        Assert.Equal([5L, 4, 3, 2], Store.Records("d1", 4, "telemetry").Select(r => r.Seq));
        Assert.Equal([1L], Store.Records("d1", 10, "health").Select(r => r.Seq));
        Assert.Empty(Store.Records("d1", 0));
        Assert.Empty(Store.Records("nobody", 10));
        var d = Store.FindDevice("d1")!;
        Assert.Equal(("vib", "1.2", 3.5), (d.Model, d.ModelVersion, d.LatencyP99Ms));
        Assert.Equal(5000, d.HealthAt!.Value.ToUnixTimeMilliseconds());
        Assert.Contains("latencyP99Ms", d.HealthJson, StringComparison.Ordinal);
        Assert.Equal(6, d.Records);
    }

    [Fact]
    public void Records_of_many_devices_come_in_one_call_per_device_newest_first_from_a_time_on_and_limited_per_device()
    {
        var since = DateTimeOffset.FromUnixTimeMilliseconds(1003);
        Store.StoreBatches([("d1", Batch("b1", "drift", 1, 2, 3, 4, 5)), ("d2", Batch("b1", "drift", 1, 9)), ("d3", Batch("b1", "telemetry", 7, 8))], _now);
        Store.StoreBatches([("d2", Batch("b2", "telemetry", 10))], _now);
        var got = Store.RecordsOfDevices(["d2", "nobody", "d3", "d1"], "drift", since, 2);
        // d2: only 1009 is from 1003 on; nobody and d3 (no drift records) add nothing; d1: its newest two of 1003..1005.
        Assert.Equal([("d2", 9L), ("d1", 5L), ("d1", 4L)], got.Select(g => (g.Device, g.Record.Seq)));
        Assert.All(got, g => Assert.Equal("drift", g.Record.Class));
        Assert.Empty(Store.RecordsOfDevices([], "drift", since, 2));
        Assert.Empty(Store.RecordsOfDevices(["d1"], "drift", since, 0));
        Assert.Empty(Store.RecordsOfDevices(["d1"], "drift", DateTimeOffset.FromUnixTimeMilliseconds(2000), 10));
    }

    [Fact]
    public void Retention_removes_records_received_before_the_cutoff_and_they_are_not_stored_again()
    {
        Store.StoreBatches([("d1", Batch("b1", "telemetry", 1, 2)), ("d1", Batch("b1", "health", 1))], _now.AddDays(-40));
        Store.StoreBatches([("d1", Batch("b1", "telemetry", 3))], _now);
        Assert.Equal(3, Store.RemoveRecordsBefore(_now.AddDays(-30)));
        Assert.Equal([3], Seqs("d1"));
        Assert.Empty(Store.Records("d1", 10, "health"));
        Assert.Equal(0, Store.RemoveRecordsBefore(_now.AddDays(-30)));
        // Exactly once holds for what is kept. (A record re-sent after retention removed it may be stored again in
        // PostgreSQL; devices drop unsent records after their outbox TTL, 7 days, long before a 30-day retention.)
        Assert.Equal(0, Store1("d1", Batch("b1", "telemetry", 3)));
    }

    [Fact]
    public void A_package_is_stored_whole_and_read_back_from_any_position()
    {
        var bytes = new byte[(5 << 19) + 123]; // 2.5 MiB and a bit: several chunks in the PostgreSQL store
        new Random(7).NextBytes(bytes);
        var entry = new ModelEntry("vib", "1.0", "sha", bytes.Length, "msha", "key1", "alice", _now, "models/vib/1.0-abc.edgepkg");
        Assert.True(Store.AddModel(entry, bytes));
        Assert.False(Store.AddModel(entry with { PackageSha256 = "other" }, new byte[10]));
        Reopen();
        Assert.Equal(("sha", bytes.Length, "alice"), (Store.FindModel("vib", "1.0")!.PackageSha256, Store.FindModel("vib", "1.0")!.SizeBytes, Store.FindModel("vib", "1.0")!.PushedBy));
        Assert.Single(Store.Models());
        Assert.Null(Store.OpenPackage("vib", "9.9"));
        using (var whole = Store.OpenPackage("vib", "1.0")!)
        {
            var copy = new MemoryStream();
            whole.CopyTo(copy);
            Assert.Equal(bytes, copy.ToArray());
        }

        using var package = Store.OpenPackage("vib", "1.0")!;
        Assert.True(package.CanSeek);
        Assert.Equal(bytes.Length, package.Length);
        var start = (1 << 20) - 10; // across a chunk boundary
        package.Seek(start, SeekOrigin.Begin);
        var range = new byte[100];
        package.ReadExactly(range);
        Assert.Equal(bytes.AsSpan(start, 100).ToArray(), range);
    }

    [Fact]
    public void Tokens_audit_rollouts_desired_states_and_quarantine_are_kept()
    {
        Store.AddApiToken("h1", "operator", "alice", _now);
        Store.AddApiToken("h2", "viewer", "bob", _now.AddSeconds(1), expires: _now.AddHours(1));
        Assert.Equal("operator", Store.ApiTokenRole("h1", _now));
        Assert.Null(Store.ApiTokenRole("h2", _now.AddHours(2))); // expired
        Assert.True(Store.HasApiTokens("viewer", _now));
        Assert.False(Store.HasApiTokens("viewer", _now.AddHours(2)));
        Assert.Equal(["h1"], Store.RevokeApiTokens("alice", _now));
        Assert.Null(Store.ApiTokenRole("h1", _now));
        Assert.Equal("alice", Store.ApiTokenName("h1"));
        Assert.Equal(["revoked", "expired"], Store.ApiTokens().Select(t => t.State)); // listed at the real now, past h2's expiry
        Store.RemoveApiTokens("bob", except: null);
        Assert.Single(Store.ApiTokens());

        Store.AddAudit(new AuditEntry(_now, "alice", "rollout.start", "rollout r1 of vib@1.0", "waves 1", null));
        Store.AddAudit(new AuditEntry(_now.AddSeconds(1), "d1", "device.model", "model vib@1.0", "→ vib@1.0", "d1"));
        Store.AddAudit(new AuditEntry(_now.AddSeconds(2), "alice", "rollouts_x", "other", "", null));
        Assert.Equal(["rollout.start"], Store.Audit(new AuditQuery(Action: "rollout")).Select(a => a.Action));
        Assert.Equal(["device.model"], Store.Audit(new AuditQuery(Device: "d1")).Select(a => a.Action));
        Assert.Equal(2, Store.Audit(new AuditQuery(Subject: "vib@1.0")).Count);
        Assert.Equal(2, Store.Audit(new AuditQuery(Since: _now.AddSeconds(1))).Count);

        Store.SaveRollout("r1", "running", """{"id":"r1"}""");
        Store.SaveRollout("r1", "done", """{"id":"r1","done":true}""");
        Store.SetDesired("d1", "vib@1.0", """{"model":"vib"}""");
        Store.SetModelState("d1", null, """{"active":"vib@1.0"}""");
        Store.SetDriftStatus("d1", "watch", _now);
        Store.Quarantine(new QuarantinedBatch(0, "d1", _now, "bad", 2, "[]"));
        Store.Quarantine(new QuarantinedBatch(0, "d2", _now, "worse", 1, "[]"));
        Reopen();
        Assert.Equal("""{"id":"r1","done":true}""", Store.FindRollout("r1"));
        Assert.Single(Store.RolloutJsons());
        Assert.Equal([("d1", """{"model":"vib"}""")], Store.DesiredStates());
        var d = Store.FindDevice("d1")!;
        Assert.Equal(("vib@1.0", """{"active":"vib@1.0"}""", "watch", "unregistered"), (d.Desired, d.ReportedJson, d.DriftStatus, d.Enrollment));
        Assert.Equal(["d2", "d1"], Store.Quarantined(null, 10).Select(q => q.Device));
        Assert.Equal("bad", Assert.Single(Store.Quarantined("d1", 10)).Reason);
    }

    [Fact]
    public async Task Exclusive_work_is_one_holder_at_a_time_and_free_again_once_released()
    {
        var held = Store.Exclusive("rollouts");
        var entered = new ManualResetEventSlim();
        var waiter = Task.Run(() =>
        {
            using (Store.Exclusive("rollouts")) entered.Set();
        });
        Assert.False(entered.Wait(300), "a second holder entered");
        held.Dispose();
        held.Dispose(); // twice is harmless
        Assert.True(entered.Wait(10_000), "the lock was not free after its release");
        await waiter.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void A_store_on_its_own_leads_every_kind_of_work()
    {
        Assert.True(Store.Leads("rollouts"));
        Assert.True(Store.Leads("retention"));
        Store.Release("rollouts");
        Assert.True(Store.Leads("rollouts")); // nobody else asks on its own store
    }

    [Fact]
    public void Broker_sessions_are_remembered_once_each_and_forgotten()
    {
        Store.RememberBrokerSession("hub-b");
        Store.RememberBrokerSession("hub-a");
        Store.RememberBrokerSession("hub-a");
        Assert.Equal(["hub-a", "hub-b"], Store.BrokerSessions());
        Store.ForgetBrokerSession("hub-a");
        Store.ForgetBrokerSession("nobody");
        Assert.Equal(["hub-b"], Store.BrokerSessions());
    }

    [Fact]
    public void Presence_keeps_the_last_boot_and_devices_are_listed()
    {
        Store.SetPresence("d2", "online", "b1", _now);
        Store.SetPresence("d2", "offline", null, _now.AddMinutes(1));
        Store.SetPresence("d1", "online", "b7", _now);
        var d2 = Store.FindDevice("d2")!;
        Assert.Equal(("offline", "b1", _now), (d2.Presence, d2.Boot, d2.LastSeen)); // offline is not hearing from it
        Assert.Equal(["d1", "d2"], Store.Devices().Select(d => d.Id).Order(StringComparer.Ordinal));
        Assert.Null(Store.FindDevice("D1"));
    }

    [Fact]
    public void Records_of_every_class_between_since_and_until_are_chosen_by_the_devices_time_newest_first_across_day_partitions()
    {
        // Four days of records, one every 6 hours, the classes taking turns (each class its own seq): real times, so that
        // the PostgreSQL store makes their day partitions and its "last two days first" split falls inside the ranges asked.
        var start = DateTimeOffset.UtcNow.AddDays(-4).AddMinutes(1);
        var classes = new[] { "telemetry", "health", "alert" };
        var all = Enumerable.Range(0, 16).Select(k => new IncomingRecord("b1", k / 3 + 1, classes[k % 3], start.AddHours(6 * k).ToUnixTimeMilliseconds(), $$"""{"n":{{k}}}""")).ToList();
        foreach (var day in all.Chunk(4)) Store.StoreBatches([("d1", day.ToList())], DateTimeOffset.FromUnixTimeMilliseconds(day[^1].At).AddSeconds(1));
        Store.StoreBatches([("d2", Batch("b1", "telemetry", 1, 2))], DateTimeOffset.UtcNow); // another device's records are never in d1's

        List<(string, long, long)> Expected(DateTimeOffset? since, DateTimeOffset? until, string? cls = null) => all
            .Where(r => (since is null || r.At >= since.Value.ToUnixTimeMilliseconds()) && (until is null || r.At < until.Value.ToUnixTimeMilliseconds()) && (cls is null || r.Class == cls))
            .OrderByDescending(r => r.At).Select(r => (r.Class, r.Seq, r.At)).ToList();
        List<(string, long, long)> Between(DateTimeOffset? since, DateTimeOffset? until, int limit, string? cls = null) =>
            Store.RecordsBetween("d1", cls, since, until, limit).Select(r => (r.Class, r.Seq, r.At)).ToList();

        var (from, to) = (start.AddDays(1), start.AddDays(3));
        var expected = Expected(from, to);
        Assert.Equal(8, expected.Count);
        Assert.Equal(3, expected.Select(r => r.Item1).Distinct().Count());
        Assert.Equal(expected, Between(from, to, 100));
        for (var limit = 1; limit <= expected.Count; limit++) Assert.Equal(expected.Take(limit), Between(from, to, limit)); // the newest, however many
        Assert.Equal(Expected(from, null), Between(from, null, 100));
        Assert.Equal(Expected(null, to), Between(null, to, 100));
        Assert.Equal(Expected(null, null), Between(null, null, 100));
        Assert.Equal(16, Between(null, null, 100).Count);
        foreach (var cls in classes) Assert.Equal(Expected(from, to, cls), Between(from, to, 100, cls)); // a class: the same records as before
        var exact = DateTimeOffset.FromUnixTimeMilliseconds(all[5].At);
        Assert.Equal([(all[5].Class, all[5].Seq, all[5].At)], Between(exact, exact.AddMilliseconds(1), 100)); // since inclusive, until exclusive
        Assert.Empty(Between(exact, exact, 100));
        Assert.Empty(Between(to, from, 100));
        Assert.Empty(Store.RecordsBetween("nobody", null, null, null, 100));
        Reopen();
        Assert.Equal(expected, Between(from, to, 100));
    }

    [Fact]
    public void Alerts_since_a_time_are_those_raised_at_or_after_it()
    {
        Store.RaiseAlert("offline", "d1", "", _now, "warning", "first");
        Store.RaiseAlert("sensor", "d1", "s1", _now.AddMinutes(10), "warning", "second");
        Store.RaiseAlert("offline", "d2", "", _now.AddMinutes(20), "warning", "third");
        Store.ClearAlert("sensor", "d1", "s1", _now.AddMinutes(30));
        Assert.Equal(["third", "second"], Store.Alerts(new AlertQuery(Since: _now.AddMinutes(10))).Select(a => a.Message));
        Assert.Equal(["third", "second", "first"], Store.Alerts(new AlertQuery(Since: _now)).Select(a => a.Message));
        Assert.Equal(["third"], Store.Alerts(new AlertQuery(Active: true, Since: _now.AddMinutes(5))).Select(a => a.Message));
        Assert.Equal(["second"], Store.Alerts(new AlertQuery(Active: false, Since: _now.AddMinutes(5))).Select(a => a.Message));
        Assert.Equal(["second"], Store.Alerts(new AlertQuery(Device: "d1", Since: _now.AddMinutes(1))).Select(a => a.Message));
        Assert.Equal(["third"], Store.Alerts(new AlertQuery(Limit: 1, Since: _now)).Select(a => a.Message));
        Assert.Empty(Store.Alerts(new AlertQuery(Since: _now.AddMinutes(21))));
    }

    public void Dispose()
    {
        _store?.Dispose();
        _dir.Dispose();
        GC.SuppressFinalize(this);
    }
}

public sealed class LiteDbHubStoreTests : HubStoreContractTests
{
    protected override IHubStore Open(string directory) => new LiteDbHubStore(directory);
}

/// <summary>The contract on PostgreSQL (a database per test in the assembly's throwaway cluster), and what only a shared store can do.</summary>
[Collection(PostgresCollection.Name)]
public sealed class PostgresHubStoreTests(PostgresFixture postgres) : HubStoreContractTests
{
    private readonly string _database = postgres.Cluster.CreateDatabase();

    protected override IHubStore Open(string directory) => PostgresHubStore.Open(_database);

    [Fact]
    public void Two_replicas_receiving_the_same_records_at_once_store_each_once()
    {
        using var a = PostgresHubStore.Open(_database);
        using var b = PostgresHubStore.Open(_database);
        var now = DateTimeOffset.UtcNow;
        var stored = 0;
        // Both replicas get every batch (a device that re-sent after a lost PUBACK, or a broker that delivered twice), concurrently.
        Parallel.For(0, 2, replica =>
        {
            var store = replica == 0 ? a : b;
            for (var i = 0; i < 50; i++)
            {
                var batches = Enumerable.Range(1, 10).Select(d => ($"dev-{d}", (IReadOnlyList<IncomingRecord>)Batch("b1", "telemetry", Enumerable.Range(i * 20 + 1, 20).Select(s => (long)s).ToArray()))).ToList();
                if (replica == 1) batches.Reverse(); // the other order: the two transactions meet on the same rows
                Interlocked.Add(ref stored, store.StoreBatches(batches, now));
            }
        });
        Assert.Equal(10 * 50 * 20, stored);
        for (var d = 1; d <= 10; d++)
        {
            Assert.Equal(Enumerable.Range(1, 1000).Select(s => (long)s), a.Records($"dev-{d}", 5000).Select(r => r.Seq).Order());
            Assert.Equal(1000, b.FindDevice($"dev-{d}")!.Records);
        }
    }

    [Fact]
    public async Task Exclusive_work_on_one_replica_waits_for_another_replica_that_holds_it_and_a_dead_holder_frees_it()
    {
        var a = PostgresHubStore.Open(_database);
        using var b = PostgresHubStore.Open(_database);
        var held = a.Exclusive("rollouts");
        using (b.Exclusive("retention")) { } // another kind of work is free
        var entered = new ManualResetEventSlim();
        var waiter = Task.Run(() =>
        {
            using (b.Exclusive("rollouts")) entered.Set();
        });
        Assert.False(entered.Wait(500), "replica b entered while replica a held the lock");
        held.Dispose();
        Assert.True(entered.Wait(10_000), "replica b did not enter after replica a let go");
        await waiter.WaitAsync(TimeSpan.FromSeconds(10));

        // A holder whose process dies: its session ends (here: ended by the server, as when its connection breaks) and the lock with it.
        var dying = a.Exclusive("rollouts");
        var key = PostgresHubStore.LeaseKey("rollouts:exclusive");
        using (var admin = new NpgsqlConnection(_database))
        {
            admin.Open();
            using var kill = new NpgsqlCommand("""
                SELECT count(pg_terminate_backend(pid)) FROM pg_locks
                WHERE locktype = 'advisory' AND granted AND classid::bigint = $1 AND objid::bigint = $2
                """, admin);
            kill.Parameters.Add(new NpgsqlParameter { Value = (long)((ulong)key >> 32) });
            kill.Parameters.Add(new NpgsqlParameter { Value = key & 0xFFFF_FFFFL });
            Assert.Equal(1L, kill.ExecuteScalar());
        }

        var again = Task.Run(() =>
        {
            using (b.Exclusive("rollouts")) { }
        });
        await again.WaitAsync(TimeSpan.FromSeconds(10)); // times out when the lock of a holder whose session ended is not free
        dying.Dispose(); // its unlock finds the session gone: no error
        a.Dispose();
    }

    [Fact]
    public void One_replica_at_a_time_leads_a_kind_of_work_and_another_takes_over_when_it_goes()
    {
        var a = PostgresHubStore.Open(_database);
        using var b = PostgresHubStore.Open(_database);
        Assert.True(a.Leads("rollouts"));
        Assert.True(a.Leads("rollouts")); // and keeps it
        Assert.False(b.Leads("rollouts"));
        Assert.True(b.Leads("retention")); // another kind of work, another lock
        a.Dispose(); // the leader goes: its database session ends, as when its process is killed
        HubHarness.Until(() => b.Leads("rollouts"), "replica b to take over the rollouts", 10_000);
        Assert.True(b.Leads("retention"));
    }

    [Fact]
    public void A_released_lease_goes_to_the_next_replica_that_asks_and_every_replica_sees_the_remembered_broker_sessions()
    {
        using var a = PostgresHubStore.Open(_database);
        using var b = PostgresHubStore.Open(_database);
        Assert.True(a.Leads("mqtt-session:hub-a"));
        Assert.False(b.Leads("mqtt-session:hub-a"));
        a.Release("mqtt-session:hub-a");
        a.Release("mqtt-session:hub-a"); // not held any more: nothing
        b.Release("mqtt-session:other"); // never held: nothing
        Assert.True(b.Leads("mqtt-session:hub-a"));
        Assert.False(a.Leads("mqtt-session:hub-a"));

        a.RememberBrokerSession("hub-b");
        a.RememberBrokerSession("hub-a");
        b.RememberBrokerSession("hub-a"); // again: one row
        Assert.Equal(["hub-a", "hub-b"], b.BrokerSessions());
        b.ForgetBrokerSession("hub-a");
        b.ForgetBrokerSession("hub-a"); // gone already: nothing
        Assert.Equal(["hub-b"], a.BrokerSessions());
    }

    [Fact]
    public void Signals_from_one_replica_reach_the_others_listener_and_a_listener_that_just_started_says_it_may_have_missed_some()
    {
        using var a = PostgresHubStore.Open(_database);
        using var b = PostgresHubStore.Open(_database);
        Assert.True(a.TakeSignals("drift-alerts").Lost); // nothing heard before its first LISTEN
        var heard = new HashSet<string>();
        var many = Enumerable.Range(0, 2000).Select(i => $"device-{i:D5}").ToList(); // more than one NOTIFY payload (8000 bytes) holds
        HubHarness.Until(() =>
        {
            b.Signal("drift-alerts", many);
            heard.UnionWith(a.TakeSignals("drift-alerts").Items);
            return heard.Count == many.Count;
        }, "replica a to hear replica b's signals", 10_000);
        Assert.Equal(many.Order(), heard.Order());
        Assert.Empty(a.TakeSignals("retention").Items); // another kind of work, another channel
    }

    [Fact]
    public void Replicas_starting_together_on_an_empty_database_migrate_it_once()
    {
        var fresh = postgres.Cluster.CreateDatabase();
        var stores = new PostgresHubStore[4];
        Parallel.For(0, stores.Length, i => stores[i] = PostgresHubStore.Open(fresh));
        try
        {
            Assert.All(stores, s => Assert.Equal(PostgresHubStore.LatestSchemaVersion, s.SchemaVersion()));
            Assert.Equal(3, stores[0].StoreBatches([("d1", Batch("b1", "telemetry", 1, 2, 3))], DateTimeOffset.UtcNow));
            Assert.Equal(0, stores[3].StoreBatches([("d1", Batch("b1", "telemetry", 1, 2, 3))], DateTimeOffset.UtcNow));
        }
        finally
        {
            foreach (var s in stores) s.Dispose();
        }
    }

    [Fact]
    public void A_database_that_cannot_be_reached_is_an_error_naming_it()
    {
        var e = Assert.ThrowsAny<Npgsql.NpgsqlException>(() => PostgresHubStore.Open(postgres.Cluster.ConnectionString("no_such_db")));
        Assert.Contains("no_such_db", e.Message, StringComparison.Ordinal);
    }
}

/// <summary>One throwaway PostgreSQL cluster for every test class in <see cref="PostgresCollection"/>, stopped and deleted after them.</summary>
public sealed class PostgresFixture : IDisposable
{
    public PostgresCluster Cluster { get; } = new();

    public void Dispose() => Cluster.Dispose();
}

[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresFixture>
{
    public const string Name = "PostgreSQL";
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
