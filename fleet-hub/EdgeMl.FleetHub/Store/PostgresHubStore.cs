using System.Text.Json;
using Npgsql;
using NpgsqlTypes;

namespace EdgeMl.FleetHub.Store;

/// <summary>
/// The shared store for several hub replicas (<c>--Store "Host=…;Database=…"</c>): PostgreSQL through plain Npgsql
/// commands. Records are one row each in a table partitioned by day of the device's time (PostgresHubStore.Partitions)
/// with a unique key on (device, class, at, boot, seq), so a record is stored once however often and by however many
/// replicas it arrives (a re-sent record carries the same time; <c>INSERT … ON CONFLICT DO NOTHING</c>). Registry, tokens,
/// enrollment, rollouts, desired states, audit, quarantine and model packages (in 1 MiB <c>bytea</c> chunks) are rows
/// too, so any replica answers any API call. The schema is created and migrated at start (<see cref="Migrations"/>)
/// under an advisory lock, so replicas starting together are safe.
/// </summary>
/// <remarks>
/// Errors: a lost connection or a server that is going away surfaces as <see cref="IOException"/> (the ingest writer
/// does not acknowledge the batch, and the device sends it again); an error in the data itself (SQLSTATE class 22/23/54)
/// stays a <see cref="PostgresException"/> (the batch is quarantined).
/// </remarks>
public sealed partial class PostgresHubStore : IHubStore
{
    private readonly NpgsqlDataSource _db;

    /// <summary>Package chunk size (bytes): a range request reads only the chunks it needs.</summary>
    internal const int ChunkBytes = 1 << 20;

    /// <summary>Key of the advisory lock that serialises schema migrations between replicas.</summary>
    private const long MigrationLock = 0x45444745_4d4c0001; // "EDGEML" + 1

    /// <summary>A connection of its own (not pooled: closing it must end the session) holding this replica's leases.</summary>
    private readonly string _leaseConnectionString;
    private readonly Lock _leaseGate = new();
    private readonly HashSet<string> _leading = new(StringComparer.Ordinal);
    private NpgsqlConnection? _leaseConnection;

    /// <summary><c>--RetentionDays</c> (0: for ever): how far back ingest creates day partitions.</summary>
    private readonly double _retentionDays;

    private PostgresHubStore(NpgsqlDataSource db, string connectionString, double retentionDays)
    {
        _db = db;
        _retentionDays = retentionDays;
        _leaseConnectionString = new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString;
    }

    /// <summary>
    /// Connects and brings the schema to the newest version. Throws <see cref="ArgumentException"/> for a connection
    /// string that is not one, <see cref="NpgsqlException"/> when the server cannot be reached or refuses us.
    /// </summary>
    /// <param name="connectionString">Npgsql's format.</param>
    /// <param name="retentionDays">
    /// <c>--RetentionDays</c> (0: for ever): ingest creates the day partitions of records that far back, and sends older
    /// ones to the default partition (<see cref="PostgresHubStore"/>, Partitions).
    /// </param>
    public static PostgresHubStore Open(string connectionString, double retentionDays = 30)
    {
        var builder = new NpgsqlDataSourceBuilder(connectionString);
        var db = builder.Build();
        try
        {
            Migrate(db);
            return new PostgresHubStore(db, connectionString, retentionDays);
        }
        catch
        {
            db.Dispose();
            throw;
        }
    }

    /// <summary>
    /// <see cref="Open"/>, tried again while the server cannot be reached yet (a hub started with, or just before, its
    /// database: after a power cut, or by a supervisor during a database restart): each failure that may pass (Npgsql's
    /// <see cref="NpgsqlException.IsTransient"/>: no answer, a refused or cut connection, the server starting up or out of
    /// connections) is written as one line to <paramref name="log"/>, then the next try comes after 1 s, doubling to at most
    /// 10 s, the last one when <paramref name="wait"/> has passed. Anything else (a wrong password, no such database, a schema newer
    /// than this hub) is thrown at once.
    /// </summary>
    /// <exception cref="NpgsqlException">The last failure, once <paramref name="wait"/> has passed, or one that will not pass.</exception>
    /// <exception cref="InvalidOperationException">As <see cref="Open"/>.</exception>
    public static PostgresHubStore OpenWaiting(string connectionString, double retentionDays, TimeSpan wait, TextWriter log)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var pause = TimeSpan.FromSeconds(1);
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var store = Open(connectionString, retentionDays);
                if (attempt > 1) log.WriteLine($"edgeml-hub: PostgreSQL answered at try {attempt}, after {clock.Elapsed.TotalSeconds:0} s");
                return store;
            }
            catch (NpgsqlException e) when (e.IsTransient && clock.Elapsed < wait)
            {
                var target = new NpgsqlConnectionStringBuilder(connectionString);
                log.WriteLine($"edgeml-hub: PostgreSQL at {target.Host}:{target.Port} cannot be reached yet (try {attempt}, waiting up to {wait.TotalSeconds:0} s in all, --StoreWaitSeconds): {e.Message}");
                var left = wait - clock.Elapsed; // read once: the last try at the end of the wait, never a negative sleep
                if (left > TimeSpan.Zero) Thread.Sleep(pause < left ? pause : left);
                pause = TimeSpan.FromTicks(Math.Min(pause.Ticks * 2, TimeSpan.FromSeconds(10).Ticks));
            }
        }
    }

    /// <summary>
    /// Schema versions, applied in order, each in its own transaction with its row in <c>schema_version</c>. Append only:
    /// a released migration is never changed.
    /// </summary>
    internal static readonly string[] Migrations =
    [
        // 1: everything the hub keeps.
        """
        CREATE TABLE devices (
            id text PRIMARY KEY,
            grp text, tags text, created_at bigint,
            presence text NOT NULL DEFAULT 'unknown', boot text, last_seen bigint NOT NULL DEFAULT 0, records bigint NOT NULL DEFAULT 0,
            revoked boolean NOT NULL DEFAULT false, revoked_at bigint, enrolled_at bigint,
            token_hash text UNIQUE, token_expires bigint, secret_hash text,
            model text, model_version text, latency_p99_ms double precision, health_at bigint, health text,
            drift_status text, drift_at bigint, desired text, desired_json text, reported text);
        CREATE TABLE records (
            id bigint GENERATED ALWAYS AS IDENTITY,
            device text NOT NULL, boot text NOT NULL, class text NOT NULL, seq bigint NOT NULL,
            at bigint NOT NULL, received bigint NOT NULL, data text NOT NULL,
            PRIMARY KEY (device, boot, class, seq));
        CREATE INDEX records_newest ON records (device, id);
        CREATE INDEX records_newest_by_class ON records (device, class, id);
        CREATE INDEX records_received ON records (received);
        CREATE TABLE models (
            name text NOT NULL, version text NOT NULL, sha256 text NOT NULL, size bigint NOT NULL, model_sha256 text NOT NULL,
            key_id text NOT NULL, pushed_by text NOT NULL, pushed_at bigint NOT NULL, file text NOT NULL,
            PRIMARY KEY (name, version));
        CREATE TABLE package_chunks (
            name text NOT NULL, version text NOT NULL, idx integer NOT NULL, data bytea NOT NULL,
            PRIMARY KEY (name, version, idx),
            FOREIGN KEY (name, version) REFERENCES models (name, version));
        -- Packages are zip files: already compressed, so stored out of line without another try.
        ALTER TABLE package_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
        CREATE TABLE rollouts (id text PRIMARY KEY, state text NOT NULL, json text NOT NULL);
        CREATE TABLE audit (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at bigint NOT NULL, actor text NOT NULL, action text NOT NULL, subject text NOT NULL, details text NOT NULL, device text NOT NULL);
        CREATE INDEX audit_at ON audit (at);
        CREATE INDEX audit_device ON audit (device, at);
        CREATE TABLE api_tokens (
            hash text PRIMARY KEY, role text NOT NULL, name text NOT NULL, created bigint NOT NULL, expires bigint, revoked_at bigint);
        CREATE INDEX api_tokens_name ON api_tokens (name);
        CREATE TABLE quarantine (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            device text NOT NULL, at bigint NOT NULL, reason text NOT NULL, n integer NOT NULL, records text NOT NULL);
        CREATE INDEX quarantine_device ON quarantine (device, id);
        """,
        // 2: one index fewer on the hot table. A device's newest records of any class come from (device, class, id), one
        // short index scan per class (Records), so (device, id) costs every insert and serves nothing.
        """
        DROP INDEX records_newest;
        """,
        // 3: the dashboard: the fleet table's columns from the newest health report (HealthDigest), presence changes, alerts.
        """
        ALTER TABLE devices ADD COLUMN cpu_percent double precision, ADD COLUMN memory_percent double precision, ADD COLUMN temperature_c double precision,
            ADD COLUMN outbox_depth bigint, ADD COLUMN outbox_dropped bigint, ADD COLUMN inference_errors bigint, ADD COLUMN healthy boolean, ADD COLUMN problems text;
        CREATE INDEX devices_grp ON devices (grp);
        CREATE INDEX devices_last_seen ON devices (last_seen);
        CREATE INDEX devices_model ON devices (model, model_version);
        CREATE INDEX devices_drift ON devices (drift_status);
        CREATE INDEX devices_unhealthy ON devices (id) WHERE healthy = false;
        CREATE INDEX records_by_time ON records (device, class, at);
        CREATE TABLE presence_log (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, device text NOT NULL, at bigint NOT NULL, presence text NOT NULL);
        CREATE INDEX presence_log_device ON presence_log (device, at);
        CREATE INDEX presence_log_at ON presence_log (at);
        CREATE TABLE alerts (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind text NOT NULL, device text NOT NULL, subject text NOT NULL,
            raised_at bigint NOT NULL, cleared_at bigint, severity text NOT NULL, message text NOT NULL);
        CREATE UNIQUE INDEX alerts_one_active ON alerts (kind, device, subject) WHERE cleared_at IS NULL;
        CREATE UNIQUE INDEX alerts_once ON alerts (kind, device, subject, raised_at);
        CREATE INDEX alerts_raised ON alerts (raised_at);
        CREATE INDEX alerts_cleared ON alerts (cleared_at);
        """,
        // 4: dashboard sessions (cookie hash → the API token it stands for).
        """
        CREATE TABLE sessions (
            id_hash text PRIMARY KEY, token_hash text NOT NULL, csrf text NOT NULL, created bigint NOT NULL, expires bigint NOT NULL);
        CREATE INDEX sessions_expires ON sessions (expires);
        """,
        // 5: records partitioned by the device's own time, one partition a day (records_YYYYMMDD, created ahead by the
        // retention leader and on demand by ingest) and a default partition for times without one (implausible ones:
        // before 2020, far ahead, older than retention). One key serves exactly-once and every query: (device, class, at,
        // boot, seq) — a re-sent record carries the same at, so it meets its first copy in the same partition. No identity
        // column, no other index on the daily partitions; the default partition has one on the receive time (its retention).
        // The key's text columns compare bytewise (COLLATE "C"): no locale rules on every insert's comparisons.
        // The rows move over in this transaction (under the migration lock: a second replica waits, then finds version 5).
        """
        ALTER TABLE records RENAME TO records_v4;
        ALTER TABLE records_v4 DROP CONSTRAINT records_pkey;
        DROP INDEX records_newest_by_class;
        DROP INDEX records_by_time;
        DROP INDEX records_received;
        CREATE TABLE records (
            device text COLLATE "C" NOT NULL, boot text COLLATE "C" NOT NULL, class text COLLATE "C" NOT NULL, seq bigint NOT NULL,
            at bigint NOT NULL, received bigint NOT NULL, data text NOT NULL,
            CONSTRAINT records_pkey PRIMARY KEY (device, class, at, boot, seq)) PARTITION BY RANGE (at);
        CREATE TABLE records_default PARTITION OF records DEFAULT;
        CREATE INDEX records_default_received ON records_default (received);
        DO $$
        DECLARE
            today bigint := floor(extract(epoch FROM now()) / 86400)::bigint;
            d bigint;
        BEGIN
            -- Days of the last 400 and the next one that hold rows (at most ~400 partitions); the rest goes to the default partition.
            FOR d IN SELECT DISTINCT floor(at / 86400000.0)::bigint FROM records_v4
                     WHERE at >= (today - 400) * 86400000 AND at < (today + 2) * 86400000 LOOP
                EXECUTE format('CREATE TABLE %I PARTITION OF records FOR VALUES FROM (%s) TO (%s)',
                    'records_' || to_char(to_timestamp(d * 86400) AT TIME ZONE 'UTC', 'YYYYMMDD'), d * 86400000, (d + 1) * 86400000);
            END LOOP;
        END $$;
        INSERT INTO records (device, boot, class, seq, at, received, data) SELECT device, boot, class, seq, at, received, data FROM records_v4;
        DROP TABLE records_v4;
        ANALYZE records;
        """,
        // 6: the replicas' persistent sessions at the external broker (MQTT client identifiers), so that another replica can
        // take over what the broker queued for one that died for good (ExternalBrokerClient.Adoption.cs).
        """
        CREATE TABLE broker_sessions (client_id text COLLATE "C" PRIMARY KEY, remembered bigint NOT NULL);
        """,
    ];

    /// <summary>
    /// Brings a database to schema <paramref name="version"/> and no further (a test of a later migration on a database
    /// as an older hub left it). Throws as <see cref="Open"/> does.
    /// </summary>
    public static void MigrateTo(string connectionString, int version)
    {
        using var db = NpgsqlDataSource.Create(connectionString);
        Migrate(db, Math.Clamp(version, 0, Migrations.Length));
    }

    private static void Migrate(NpgsqlDataSource db, int target = -1)
    {
        if (target < 0) target = Migrations.Length;
        using var c = db.OpenConnection();
        using (var wait = Command(c, null, "SELECT pg_advisory_lock($1)", MigrationLock))
        {
            // A replica starting while another migrates waits for it, however long the migration takes.
            wait.CommandTimeout = 0;
            wait.ExecuteNonQuery();
        }

        try
        {
            Exec(c, null, "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
            using var q = new NpgsqlCommand("SELECT coalesce(max(version), 0) FROM schema_version", c);
            var current = Convert.ToInt32(q.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
            if (current > Migrations.Length)
            {
                throw new InvalidOperationException($"the database's schema is version {current}, newer than this hub knows ({Migrations.Length}): run the newer hub");
            }

            for (var v = current + 1; v <= target; v++)
            {
                using var t = c.BeginTransaction();
                using (var step = Command(c, t, Migrations[v - 1]))
                {
                    // No time limit: a migration may move every record (5 copies the records table into its partitions).
                    step.CommandTimeout = 0;
                    step.ExecuteNonQuery();
                }

                Exec(c, t, "INSERT INTO schema_version (version) VALUES ($1)", v);
                t.Commit();
            }
        }
        finally
        {
            Exec(c, null, "SELECT pg_advisory_unlock($1)", MigrationLock);
        }
    }

    /// <summary>The schema version this hub migrates a database to.</summary>
    public static int LatestSchemaVersion => Migrations.Length;

    /// <summary>The schema version the database is at (for tests and diagnostics).</summary>
    public int SchemaVersion()
    {
        using var c = _db.OpenConnection();
        using var q = new NpgsqlCommand("SELECT coalesce(max(version), 0) FROM schema_version", c);
        return Convert.ToInt32(q.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }

    private static int Exec(NpgsqlConnection c, NpgsqlTransaction? t, string sql, params object?[] args)
    {
        using var cmd = Command(c, t, sql, args);
        return cmd.ExecuteNonQuery();
    }

    private static NpgsqlCommand Command(NpgsqlConnection c, NpgsqlTransaction? t, string sql, params object?[] args)
    {
        var cmd = new NpgsqlCommand(sql, c, t);
        foreach (var a in args) cmd.Parameters.Add(a is NpgsqlParameter p ? p : new NpgsqlParameter { Value = a ?? DBNull.Value });
        return cmd;
    }

    /// <summary>A parameter with an explicit type, for NULLs and arrays.</summary>
    private static NpgsqlParameter P(NpgsqlDbType type, object? value) => new() { NpgsqlDbType = type, Value = value ?? DBNull.Value };

    /// <summary>Runs <paramref name="work"/> on a pooled connection; connection-level failures become <see cref="IOException"/>.</summary>
    private T Run<T>(Func<NpgsqlConnection, T> work)
    {
        try
        {
            using var c = _db.OpenConnection();
            return work(c);
        }
        catch (NpgsqlException e) when (Transient(e))
        {
            throw new IOException($"PostgreSQL: {e.Message}", e);
        }
    }

    private void Run(Action<NpgsqlConnection> work) => Run(c =>
    {
        work(c);
        return 0;
    });

    /// <summary>
    /// True for failures of the connection or the server (worth a retry); false for errors in what was sent (data
    /// exceptions, constraint violations, program limits), which would fail the same way again.
    /// </summary>
    private static bool Transient(NpgsqlException e) =>
        e is not PostgresException pg || !(pg.SqlState.StartsWith("22", StringComparison.Ordinal) || pg.SqlState.StartsWith("23", StringComparison.Ordinal)
                                           || pg.SqlState.StartsWith("54", StringComparison.Ordinal) || pg.SqlState.StartsWith("42", StringComparison.Ordinal));

    /// <summary>
    /// One transaction for the whole group: first the day partitions the batch needs and lacks (Partitions), then the
    /// records go in with one multi-row insert over arrays (unnest), new ones only (a plain insert first; on a unique
    /// violation the same with <c>ON CONFLICT DO NOTHING</c> on the key; a record twice in the group is stored once), in
    /// the order given; then each device's counter, last-seen and newest health. A deadlock with another replica writing
    /// the same devices is retried. (An anti-join instead of ON CONFLICT was tried: PostgreSQL may plan its look-up on
    /// another index while the table's statistics are young, and then each commit scans every row of its devices: 4,700
    /// records/s. ON CONFLICT always probes the unique key.)
    /// </summary>
    public int StoreBatches(IReadOnlyList<(string Device, IReadOnlyList<IncomingRecord> Records)> batches, DateTimeOffset receivedAt)
    {
        var n = batches.Sum(b => b.Records.Count);
        if (n == 0) return 0;
        var devices = new string[n];
        var boots = new string[n];
        var classes = new string[n];
        var seqs = new long[n];
        var ats = new long[n];
        var datas = new string[n];
        var i = 0;
        foreach (var (device, records) in batches)
        {
            foreach (var r in records)
            {
                (devices[i], boots[i], classes[i], seqs[i], ats[i], datas[i]) = (device, r.Boot, r.Class, r.Seq, r.At, r.Data);
                i++;
            }
        }

        var received = receivedAt.ToUnixTimeMilliseconds();
        if (MissingDays(ats, received) is { Count: > 0 } missing) CreatePartitions(missing);
        // First as a plain INSERT: new records are the rule, and the key's one look-up per row then does the check and the
        // insert (ON CONFLICT DO NOTHING looks each row up once more before it inserts). A record stored already (a re-send,
        // another replica's copy) fails it with a unique violation, rolled back whole: then again with ON CONFLICT.
        var plain = true;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return Run(c => Ingest(c, devices, boots, classes, seqs, ats, datas, received, plain));
            }
            catch (PostgresException e) when (plain && e.SqlState == PostgresErrorCodes.UniqueViolation)
            {
                plain = false;
            }
            catch (PostgresException e) when (attempt < 5 && e.SqlState == PostgresErrorCodes.CheckViolation)
            {
                // A row bound for the default partition while another replica attached its day's partition: the default
                // partition no longer takes that day. Routed again, it goes to the new partition.
                lock (_partitionGate) _partitionDays = null;
            }
            catch (IOException e) when (attempt < 5 && e.InnerException is PostgresException { SqlState: PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.SerializationFailure })
            {
                // Another replica wrote the same rows in another order; ours was rolled back whole.
            }
        }
    }

    private static int Ingest(NpgsqlConnection c, string[] devices, string[] boots, string[] classes, long[] seqs, long[] ats, string[] datas, long received, bool plain)
    {
        using var t = c.BeginTransaction();
        var fresh = new Dictionary<string, (long Count, long HealthAt, string? Health)>(StringComparer.Ordinal);
        // What the hub needs back is per device (new records, the newest health report): summed up by the server, so a
        // commit of 20,000 records answers with one row per device, not one per record.
        using (var insert = Command(c, t, $$"""
            WITH fresh AS (
                INSERT INTO records (device, boot, class, seq, at, received, data)
                SELECT u.device, u.boot, u.class, u.seq, u.at, $7, u.data
                FROM unnest($1, $2, $3, $4, $5, $6) WITH ORDINALITY AS u(device, boot, class, seq, at, data, o)
                ORDER BY u.o
                {{(plain ? "" : "ON CONFLICT DO NOTHING")}}
                RETURNING device, class, least(at, $7) AS at, seq, CASE WHEN class = 'health' THEN data END AS health)
            SELECT device, count(*), max(at) FILTER (WHERE health IS NOT NULL),
                   (array_agg(health ORDER BY at DESC, seq DESC) FILTER (WHERE health IS NOT NULL))[1]
            FROM fresh GROUP BY device
            """,
            P(NpgsqlDbType.Array | NpgsqlDbType.Text, devices), P(NpgsqlDbType.Array | NpgsqlDbType.Text, boots), P(NpgsqlDbType.Array | NpgsqlDbType.Text, classes),
            P(NpgsqlDbType.Array | NpgsqlDbType.Bigint, seqs), P(NpgsqlDbType.Array | NpgsqlDbType.Bigint, ats), P(NpgsqlDbType.Array | NpgsqlDbType.Text, datas),
            P(NpgsqlDbType.Bigint, received)))
        using (var r = insert.ExecuteReader())
        {
            while (r.Read())
            {
                // The device's clock orders its reports, but never past the hub's (least(at, received), as in the LiteDB store).
                fresh[r.GetString(0)] = (r.GetInt64(1), r.IsDBNull(2) ? long.MinValue : r.GetInt64(2), r.IsDBNull(3) ? null : r.GetString(3));
            }
        }

        // Devices in one order in every transaction, so two replicas lock their rows in the same order; their counters in one statement.
        var ordered = fresh.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        if (ordered.Count > 0)
        {
            Exec(c, t, """
                INSERT INTO devices (id, records, last_seen)
                SELECT u.id, u.n, $3 FROM unnest($1, $2) WITH ORDINALITY AS u(id, n, o) ORDER BY u.o
                ON CONFLICT (id) DO UPDATE SET records = devices.records + excluded.records, last_seen = excluded.last_seen
                """, P(NpgsqlDbType.Array | NpgsqlDbType.Text, ordered.Select(kv => kv.Key).ToArray()),
                P(NpgsqlDbType.Array | NpgsqlDbType.Bigint, ordered.Select(kv => kv.Value.Count).ToArray()), received);
        }

        var total = 0L;
        var counters = new Dictionary<string, (long? Dropped, long? InferenceErrors)>(StringComparer.Ordinal);
        var withHealth = ordered.Where(kv => kv.Value.Health is not null).Select(kv => kv.Key).ToArray();
        if (withHealth.Length > 0)
        {
            // The counters of each device's previous report: HealthDigest tells new drops and inference errors from old ones.
            using var q = Command(c, t, "SELECT id, outbox_dropped, inference_errors FROM devices WHERE id = ANY($1)", P(NpgsqlDbType.Array | NpgsqlDbType.Text, withHealth));
            using var r = q.ExecuteReader();
            while (r.Read()) counters[r.GetString(0)] = (r.IsDBNull(1) ? null : r.GetInt64(1), r.IsDBNull(2) ? null : r.GetInt64(2));
        }

        foreach (var (device, (count, healthAt, health)) in ordered)
        {
            total += count;
            if (health is not null)
            {
                var model = HealthModel(health);
                var previous = counters.GetValueOrDefault(device);
                var digest = HealthDigest.Of(health, previous.Dropped, previous.InferenceErrors);
                Exec(c, t, """
                    UPDATE devices SET health_at = $2, health = $3,
                        model = CASE WHEN $4 THEN $5 ELSE model END, model_version = CASE WHEN $4 THEN $6 ELSE model_version END,
                        latency_p99_ms = CASE WHEN $4 THEN $7 ELSE latency_p99_ms END,
                        cpu_percent = CASE WHEN $8 THEN $9 ELSE cpu_percent END, memory_percent = CASE WHEN $8 THEN $10 ELSE memory_percent END,
                        temperature_c = CASE WHEN $8 THEN $11 ELSE temperature_c END, outbox_depth = CASE WHEN $8 THEN $12 ELSE outbox_depth END,
                        outbox_dropped = CASE WHEN $8 THEN $13 ELSE outbox_dropped END, inference_errors = CASE WHEN $8 THEN $14 ELSE inference_errors END,
                        healthy = CASE WHEN $8 THEN $15 ELSE healthy END, problems = CASE WHEN $8 THEN $16 ELSE problems END
                    WHERE id = $1 AND (health_at IS NULL OR health_at <= $2)
                    """, device, healthAt, health, model.Known, P(NpgsqlDbType.Text, model.Name), P(NpgsqlDbType.Text, model.Version), P(NpgsqlDbType.Double, model.P99),
                    digest is not null, P(NpgsqlDbType.Double, digest?.CpuPercent), P(NpgsqlDbType.Double, digest?.MemoryPercent), P(NpgsqlDbType.Double, digest?.TemperatureC),
                    P(NpgsqlDbType.Bigint, digest?.OutboxDepth), P(NpgsqlDbType.Bigint, digest?.OutboxDropped), P(NpgsqlDbType.Bigint, digest?.InferenceErrors),
                    P(NpgsqlDbType.Boolean, digest?.Healthy), P(NpgsqlDbType.Text, digest?.Problems));
            }
        }

        t.Commit();
        return (int)total;
    }

    /// <summary>The model a health report names (name, version, p99 latency); Known is false when it names none.</summary>
    private static (bool Known, string? Name, string? Version, double? P99) HealthModel(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("model", out var m) && m.ValueKind == JsonValueKind.Object)
            {
                return (true,
                    m.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null,
                    m.TryGetProperty("version", out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null,
                    m.TryGetProperty("latencyP99Ms", out var p99) && p99.TryGetDouble(out var ms) ? ms : null);
            }
        }
        catch (JsonException)
        {
            // Stored as it came; the registry just has no model for it.
        }

        return (false, null, null, null);
    }

    /// <summary>
    /// Sets presence and, in the same statement, appends to the presence history when it changed. Only "online" moves
    /// last_seen (the hub heard the device); "offline" (the Last Will, a revocation) keeps it.
    /// </summary>
    public void SetPresence(string device, string state, string? boot, DateTimeOffset at) => Run(c =>
    {
        using var t = c.BeginTransaction();
        var changed = Exec(c, t, """
            WITH prev AS (SELECT presence FROM devices WHERE id = $1 FOR UPDATE),
            up AS (
                INSERT INTO devices (id, presence, boot, last_seen) VALUES ($1, $2, $3, CASE WHEN $2 = 'online' THEN $4 ELSE 0 END)
                ON CONFLICT (id) DO UPDATE SET presence = excluded.presence, boot = coalesce(excluded.boot, devices.boot),
                    last_seen = CASE WHEN excluded.presence = 'online' THEN excluded.last_seen ELSE devices.last_seen END
                RETURNING 1)
            INSERT INTO presence_log (device, at, presence)
            SELECT $1, $4, $2 FROM (SELECT count(*) FROM up) AS done WHERE coalesce((SELECT presence FROM prev), 'unknown') <> $2
            """, device, state, P(NpgsqlDbType.Text, boot), at.ToUnixTimeMilliseconds());
        if (changed > 0)
        {
            Exec(c, t, "DELETE FROM presence_log WHERE id IN (SELECT id FROM presence_log WHERE device = $1 ORDER BY at DESC, id DESC OFFSET $2)",
                device, (long)LiteDbHubStore.PresencePerDevice);
        }

        t.Commit();
    });

    /// <summary>
    /// The newest records of a device by its own time <c>at</c> (ties: boot, seq), from the key (device, class, at, boot,
    /// seq) read backwards in each day partition (a merge of the partitions' newest entries), the last two days' partitions
    /// first: the database reads about <paramref name="limit"/> rows per class, not the device's history.
    /// </summary>
    public List<HubRecord> Records(string device, int limit, string? recordClass = null) => Run(c =>
    {
        var result = new List<HubRecord>();
        if (limit <= 0) return result;
        // First the last two days (pruned to their partitions and the default one), which answer a device that is sending;
        // then, for what is still missing, everything before (every partition).
        var recent = DateTimeOffset.UtcNow.AddDays(-2).ToUnixTimeMilliseconds();
        RecordsIn(c, device, limit, recordClass, recent, long.MaxValue, result);
        if (result.Count < limit) RecordsIn(c, device, limit - result.Count, recordClass, long.MinValue, recent, result);
        return result;
    });

    /// <summary>
    /// The newest $2 records of every class of device $1 with <c>$3 ≤ at &lt; $4</c> (boot, seq, class, at, data): the
    /// device's classes found by skipping through the key (one probe per partition each), the newest of each class from
    /// it, and the newest of those. Every read of <c>records</c> carries the range, so each is pruned to its partitions.
    /// </summary>
    public const string EveryClassSql = """
        WITH RECURSIVE classes(class) AS (
            SELECT min(class) FROM records WHERE device = $1 AND at >= $3 AND at < $4
            UNION ALL
            SELECT (SELECT min(r.class) FROM records r WHERE r.device = $1 AND r.class > classes.class AND r.at >= $3 AND r.at < $4)
            FROM classes WHERE classes.class IS NOT NULL)
        SELECT n.boot, n.seq, n.class, n.at, n.data FROM classes
        CROSS JOIN LATERAL (
            SELECT boot, seq, class, at, data FROM records r WHERE r.device = $1 AND r.class = classes.class AND r.at >= $3 AND r.at < $4
            ORDER BY r.at DESC, r.boot DESC, r.seq DESC LIMIT $2) n
        ORDER BY n.at DESC, n.boot DESC, n.seq DESC LIMIT $2
        """;

    /// <summary>The newest <paramref name="limit"/> records of a device with <c>from ≤ at &lt; until</c>, appended to <paramref name="result"/>.</summary>
    private static void RecordsIn(NpgsqlConnection c, string device, int limit, string? recordClass, long from, long until, List<HubRecord> result)
    {
        using var q = recordClass is null
            ? Command(c, null, EveryClassSql, device, limit, from, until)
            : Command(c, null, "SELECT boot, seq, class, at, data FROM records WHERE device = $1 AND class = $5 AND at >= $3 AND at < $4 ORDER BY at DESC, boot DESC, seq DESC LIMIT $2",
                device, limit, from, until, recordClass);
        using var r = q.ExecuteReader();
        while (r.Read()) result.Add(new HubRecord(r.GetString(0), r.GetInt64(1), r.GetString(2), r.GetInt64(3), r.GetString(4)));
    }

    /// <summary>
    /// Retention on the leader: creates today's and tomorrow's partitions ahead, drops the day partitions that ended
    /// before <paramref name="cutoff"/> (records go by their own time <c>at</c>, a whole day at a time), and deletes the
    /// default partition's records (times that had no partition: implausible ones) received before it, by its
    /// <c>received</c> index in slices of 50,000 rows (short transactions next to ingest).
    /// </summary>
    public long RemoveRecordsBefore(DateTimeOffset cutoff)
    {
        var now = DateTimeOffset.UtcNow;
        CreatePartitions(now, now.AddDays(1));
        return Run(c =>
        {
            var removed = DropPartitionsBefore(c, cutoff.ToUnixTimeMilliseconds());
            while (true)
            {
                var n = Exec(c, null, "DELETE FROM records_default WHERE ctid = ANY(ARRAY(SELECT ctid FROM records_default WHERE received < $1 LIMIT 50000))",
                    cutoff.ToUnixTimeMilliseconds());
                removed += n;
                if (n > 0) continue;
                Exec(c, null, "DELETE FROM presence_log WHERE at < $1", cutoff.ToUnixTimeMilliseconds());
                Exec(c, null, "DELETE FROM alerts WHERE cleared_at < $1", cutoff.ToUnixTimeMilliseconds());
                return removed;
            }
        });
    }

    /// <summary>
    /// A session-level advisory lock per kind of work, taken with <c>pg_try_advisory_lock</c> on this replica's lease
    /// connection and kept while that session lives; checked with a round trip on every ask, so a replica whose
    /// connection broke stops leading at once. When the leader dies its session ends and the lock is free.
    /// </summary>
    public bool Leads(string work)
    {
        lock (_leaseGate)
        {
            try
            {
                if (_leaseConnection is null)
                {
                    _leading.Clear();
                    _leaseConnection = new NpgsqlConnection(_leaseConnectionString);
                    _leaseConnection.Open();
                }

                if (_leading.Contains(work))
                {
                    Exec(_leaseConnection, null, "SELECT 1");
                    return true;
                }

                using var q = Command(_leaseConnection, null, "SELECT pg_try_advisory_lock($1)", LeaseKey(work));
                if (q.ExecuteScalar() is not true) return false;
                _leading.Add(work);
                return true;
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException or IOException or TimeoutException)
            {
                // The session is gone, and with it every lease: start again at the next ask.
                _leaseConnection?.Dispose();
                _leaseConnection = null;
                _leading.Clear();
                return false;
            }
        }
    }

    /// <summary>Unlocks <paramref name="work"/>'s advisory lock on the lease connection when this replica holds it.</summary>
    public void Release(string work)
    {
        lock (_leaseGate)
        {
            if (_leaseConnection is null || !_leading.Remove(work)) return;
            try
            {
                Exec(_leaseConnection, null, "SELECT pg_advisory_unlock($1)", LeaseKey(work));
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException or IOException or TimeoutException)
            {
                // The session is gone, and every lease with it.
                _leaseConnection.Dispose();
                _leaseConnection = null;
                _leading.Clear();
            }
        }
    }

    public void RememberBrokerSession(string clientId) => Run(c =>
        Exec(c, null, "INSERT INTO broker_sessions (client_id, remembered) VALUES ($1, $2) ON CONFLICT (client_id) DO UPDATE SET remembered = excluded.remembered",
            clientId, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));

    public void ForgetBrokerSession(string clientId) => Run(c => Exec(c, null, "DELETE FROM broker_sessions WHERE client_id = $1", clientId));

    public IReadOnlyList<string> BrokerSessions() => Run(c =>
    {
        using var q = new NpgsqlCommand("SELECT client_id FROM broker_sessions ORDER BY client_id", c);
        using var r = q.ExecuteReader();
        var ids = new List<string>();
        while (r.Read()) ids.Add(r.GetString(0));
        return (IReadOnlyList<string>)ids;
    });

    /// <summary>
    /// The advisory-lock key of a kind of work (FNV-1a of its name in the hub's own key range): who leads it is the
    /// session holding it in <c>pg_locks</c> (<c>classid</c> = the high 32 bits, <c>objid</c> = the low 32 bits).
    /// </summary>
    public static long LeaseKey(string work)
    {
        var h = 2166136261u;
        foreach (var ch in work) h = (h ^ ch) * 16777619u;
        return (0x45444745L << 32) | h;
    }

    /// <summary><c>pg_database_size</c> of the database the hub uses (tables, indexes, packages; what the server holds on disk for it).</summary>
    public long SizeBytes() => Run(c =>
    {
        using var q = new NpgsqlCommand("SELECT pg_database_size(current_database())", c);
        return Convert.ToInt64(q.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    });

    /// <summary>
    /// A session-level advisory lock (<c>pg_advisory_lock</c>, key of <c>{work}:exclusive</c>) on a pooled connection held
    /// until disposed; unlocked before the connection goes back to the pool. A replica that dies mid-way loses it with its session.
    /// </summary>
    public IDisposable Exclusive(string work)
    {
        var key = LeaseKey(work + ":exclusive");
        NpgsqlConnection? c = null;
        try
        {
            c = _db.OpenConnection();
            Exec(c, null, "SELECT pg_advisory_lock($1)", key);
            return new AdvisoryLock(c, key);
        }
        catch (NpgsqlException e) when (Transient(e))
        {
            c?.Dispose();
            throw new IOException($"PostgreSQL: {e.Message}", e);
        }
        catch
        {
            c?.Dispose();
            throw;
        }
    }

    private sealed class AdvisoryLock(NpgsqlConnection connection, long key) : IDisposable
    {
        public void Dispose()
        {
            try
            {
                Exec(connection, null, "SELECT pg_advisory_unlock($1)", key);
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
            {
                // The session is gone, and the lock with it.
            }
            finally
            {
                connection.Dispose();
            }
        }
    }

    public void Dispose()
    {
        _closing.Cancel(); // the LISTEN threads (PostgresHubStore.Signals.cs) end within a second
        lock (_leaseGate)
        {
            _leaseConnection?.Dispose();
            _leaseConnection = null;
        }

        _db.Dispose();
    }
}
