using System.Text.Json;
using Npgsql;
using NpgsqlTypes;

namespace EdgeMl.FleetHub.Store;

/// <summary>Registry, enrollment, tokens, models and packages, rollouts, desired states, audit and quarantine as rows.</summary>
public sealed partial class PostgresHubStore
{
    private const string DeviceColumns = """
        id, grp, tags, presence, boot, last_seen, records, revoked, revoked_at, enrolled_at, token_hash IS NOT NULL, secret_hash IS NOT NULL,
        model, model_version, latency_p99_ms, health_at, health, drift_status, drift_at, desired, reported
        """;

    public List<DeviceEntry> Devices() => Run(c =>
    {
        using var q = Command(c, null, $"SELECT {DeviceColumns} FROM devices ORDER BY id");
        using var r = q.ExecuteReader();
        var result = new List<DeviceEntry>();
        while (r.Read()) result.Add(Entry(r));
        return result;
    });

    public DeviceEntry? FindDevice(string id) => Run(c =>
    {
        using var q = Command(c, null, $"SELECT {DeviceColumns} FROM devices WHERE id = $1", id);
        using var r = q.ExecuteReader();
        return r.Read() ? Entry(r) : null;
    });

    private static DeviceEntry Entry(NpgsqlDataReader r)
    {
        var revoked = r.GetBoolean(7);
        var enrollment = revoked ? "revoked" : r.GetBoolean(11) ? "enrolled" : r.GetBoolean(10) ? "pending" : "unregistered";
        var tags = Text(r, 2) is { } json ? JsonSerializer.Deserialize<Dictionary<string, string>>(json) ?? [] : [];
        return new DeviceEntry(
            r.GetString(0), Text(r, 1), tags, enrollment, Time(r, 9), Time(r, 8),
            r.GetString(3), Text(r, 4), Time(r, 5), r.GetInt64(6),
            Text(r, 12), Text(r, 13), r.IsDBNull(14) ? null : r.GetDouble(14),
            Time(r, 15), Text(r, 16), Text(r, 17), Time(r, 18), Text(r, 19), Text(r, 20));
    }

    private static string? Text(NpgsqlDataReader r, int i) => r.IsDBNull(i) ? null : r.GetString(i);

    private static DateTimeOffset? Time(NpgsqlDataReader r, int i) => r.IsDBNull(i) || r.GetInt64(i) <= 0 ? null : DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(i));

    private static long? Ms(DateTimeOffset? t) => t?.ToUnixTimeMilliseconds();

    public void CreateEnrollment(string id, string? group, IReadOnlyDictionary<string, string> tags, string tokenHash, DateTimeOffset expires, DateTimeOffset now) => Run(c =>
    {
        using var t = c.BeginTransaction();
        Exec(c, t, "INSERT INTO devices (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", id);
        using (var q = Command(c, t, "SELECT secret_hash IS NOT NULL AND NOT revoked FROM devices WHERE id = $1 FOR UPDATE", id))
        {
            if (q.ExecuteScalar() is true)
            {
                throw new InvalidOperationException($"device '{id}' is already enrolled; revoke it first to enroll it again");
            }
        }

        Exec(c, t, """
            UPDATE devices SET secret_hash = NULL, revoked = false, revoked_at = NULL, grp = coalesce($2, grp), tags = $3, created_at = $4,
                token_hash = $5, token_expires = $6
            WHERE id = $1
            """, id, P(NpgsqlDbType.Text, group), JsonSerializer.Serialize(tags), now.ToUnixTimeMilliseconds(), tokenHash, expires.ToUnixTimeMilliseconds());
        t.Commit();
    });

    public string? ClaimEnrollment(string tokenHash, string secretHash, DateTimeOffset now) => Run(c =>
    {
        // One statement: two replicas claiming the same token at once cannot both get it.
        using var q = Command(c, null, """
            UPDATE devices SET token_hash = NULL, token_expires = NULL, secret_hash = $2, enrolled_at = $3
            WHERE token_hash = $1 AND token_expires >= $3 RETURNING id
            """, tokenHash, secretHash, now.ToUnixTimeMilliseconds());
        return q.ExecuteScalar() as string;
    });

    public DeviceAccess CheckDevice(string id, string password) => Run(c =>
    {
        using var q = Command(c, null, "SELECT revoked, secret_hash FROM devices WHERE id = $1", id);
        using var r = q.ExecuteReader();
        if (!r.Read() || r.IsDBNull(1)) return DeviceAccess.Unknown;
        if (r.GetBoolean(0)) return DeviceAccess.Revoked;
        return Security.Secrets.Matches(password, r.GetString(1)) ? DeviceAccess.Allowed : DeviceAccess.BadPassword;
    });

    public bool Revoke(string id, DateTimeOffset now) => Run(c => Exec(c, null,
        "UPDATE devices SET revoked = true, revoked_at = $2, token_hash = NULL, token_expires = NULL WHERE id = $1", id, now.ToUnixTimeMilliseconds()) == 1);

    public void SetModelState(string id, string? desired, string? reportedJson) => Run(c => Exec(c, null, """
        INSERT INTO devices (id, desired, reported) VALUES ($1, $2, $3)
        ON CONFLICT (id) DO UPDATE SET desired = coalesce(excluded.desired, devices.desired), reported = coalesce(excluded.reported, devices.reported)
        """, id, P(NpgsqlDbType.Text, desired), P(NpgsqlDbType.Text, reportedJson)));

    public void SetDriftStatus(string id, string status, DateTimeOffset at) => Run(c => Exec(c, null, """
        INSERT INTO devices (id, drift_status, drift_at) VALUES ($1, $2, $3)
        ON CONFLICT (id) DO UPDATE SET drift_status = excluded.drift_status, drift_at = excluded.drift_at
        """, id, status, at.ToUnixTimeMilliseconds()));

    /// <summary>Entry and package chunks in one transaction: a model is listed only once its package is complete.</summary>
    public bool AddModel(ModelEntry m, ReadOnlyMemory<byte> package) => Run(c =>
    {
        using var t = c.BeginTransaction();
        var added = Exec(c, t, """
            INSERT INTO models (name, version, sha256, size, model_sha256, key_id, pushed_by, pushed_at, file) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT DO NOTHING
            """, m.Name, m.Version, m.PackageSha256, (long)package.Length, m.ModelSha256, m.KeyId, m.PushedBy, m.PushedAt.ToUnixTimeMilliseconds(), "postgresql:package_chunks");
        if (added == 0) return false;
        for (var (offset, idx) = (0, 0); offset < package.Length; offset += ChunkBytes, idx++)
        {
            var chunk = package.Slice(offset, Math.Min(ChunkBytes, package.Length - offset));
            Exec(c, t, "INSERT INTO package_chunks (name, version, idx, data) VALUES ($1, $2, $3, $4)", m.Name, m.Version, idx, P(NpgsqlDbType.Bytea, chunk));
        }

        t.Commit();
        return true;
    });

    public Stream? OpenPackage(string name, string version) => Run(c =>
    {
        using var q = Command(c, null, "SELECT size FROM models WHERE name = $1 AND version = $2", name, version);
        return q.ExecuteScalar() is long size ? new PackageChunkStream(_db, name, version, size) : null;
    });

    public ModelEntry? FindModel(string name, string version) => Run(c =>
    {
        using var q = Command(c, null, $"SELECT {ModelColumns} FROM models WHERE name = $1 AND version = $2", name, version);
        using var r = q.ExecuteReader();
        return r.Read() ? Model(r) : null;
    });

    public List<ModelEntry> Models() => Run(c =>
    {
        using var q = Command(c, null, $"SELECT {ModelColumns} FROM models ORDER BY name, version");
        using var r = q.ExecuteReader();
        var result = new List<ModelEntry>();
        while (r.Read()) result.Add(Model(r));
        return result;
    });

    private const string ModelColumns = "name, version, sha256, size, model_sha256, key_id, pushed_by, pushed_at, file";

    private static ModelEntry Model(NpgsqlDataReader r) => new(
        r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt64(3), r.GetString(4), r.GetString(5), r.GetString(6),
        DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(7)), r.GetString(8));

    public void SaveRollout(string id, string state, string json) => Run(c => Exec(c, null,
        "INSERT INTO rollouts (id, state, json) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET state = excluded.state, json = excluded.json", id, state, json));

    public string? FindRollout(string id) => Run(c =>
    {
        using var q = Command(c, null, "SELECT json FROM rollouts WHERE id = $1", id);
        return q.ExecuteScalar() as string;
    });

    public List<string> RolloutJsons() => Run(c => Strings(c, "SELECT json FROM rollouts ORDER BY id"));

    public void SetDesired(string id, string label, string json) => Run(c => Exec(c, null, """
        INSERT INTO devices (id, desired, desired_json) VALUES ($1, $2, $3)
        ON CONFLICT (id) DO UPDATE SET desired = excluded.desired, desired_json = excluded.desired_json
        """, id, label, json));

    public List<(string Device, string Json)> DesiredStates() => Run(c =>
    {
        using var q = Command(c, null, "SELECT id, desired_json FROM devices WHERE desired_json IS NOT NULL ORDER BY id");
        using var r = q.ExecuteReader();
        var result = new List<(string, string)>();
        while (r.Read()) result.Add((r.GetString(0), r.GetString(1)));
        return result;
    });

    public void AddAudit(AuditEntry e) => Run(c => Exec(c, null,
        "INSERT INTO audit (at, actor, action, subject, details, device) VALUES ($1, $2, $3, $4, $5, $6)",
        e.At.ToUnixTimeMilliseconds(), e.Actor, e.Action, e.Subject, e.Details, e.Device ?? ""));

    /// <summary>Filtered in the database: time (index on at), action or its sub-actions (<c>rollout</c> matches <c>rollout.start</c>), device, subject text.</summary>
    public List<AuditEntry> Audit(AuditQuery q) => Run(c =>
    {
        using var cmd = Command(c, null, """
            SELECT at, actor, action, subject, details, device FROM audit
            WHERE at >= $1
              AND ($2::text IS NULL OR action = $2 OR left(action, length($2) + 1) = $2 || '.')
              AND ($3::text IS NULL OR device = $3)
              AND ($4::text IS NULL OR strpos(subject, $4) > 0)
            ORDER BY at, id
            """, q.Since?.ToUnixTimeMilliseconds() ?? 0L, P(NpgsqlDbType.Text, q.Action), P(NpgsqlDbType.Text, q.Device), P(NpgsqlDbType.Text, q.Subject));
        using var r = cmd.ExecuteReader();
        var result = new List<AuditEntry>();
        while (r.Read())
        {
            result.Add(new AuditEntry(DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(0)), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4),
                r.GetString(5) is { Length: > 0 } device ? device : null));
        }

        return result;
    });

    public string? ApiTokenName(string tokenHash) => Run(c =>
    {
        using var q = Command(c, null, "SELECT name FROM api_tokens WHERE hash = $1", tokenHash);
        return q.ExecuteScalar() as string;
    });

    public void AddApiToken(string tokenHash, string role, string name, DateTimeOffset now, DateTimeOffset? expires = null) => Run(c => Exec(c, null, """
        INSERT INTO api_tokens (hash, role, name, created, expires) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (hash) DO UPDATE SET role = excluded.role, name = excluded.name, created = excluded.created, expires = excluded.expires, revoked_at = NULL
        """, tokenHash, role, name, now.ToUnixTimeMilliseconds(), P(NpgsqlDbType.Bigint, Ms(expires))));

    private const string Active = "revoked_at IS NULL AND (expires IS NULL OR expires > $2)";

    public string? ApiTokenRole(string tokenHash, DateTimeOffset now) => Run(c =>
    {
        using var q = Command(c, null, $"SELECT role FROM api_tokens WHERE hash = $1 AND {Active}", tokenHash, now.ToUnixTimeMilliseconds());
        return q.ExecuteScalar() as string;
    });

    public bool HasApiTokens(string role, DateTimeOffset now) => Run(c =>
    {
        using var q = Command(c, null, $"SELECT EXISTS (SELECT 1 FROM api_tokens WHERE role = $1 AND {Active})", role, now.ToUnixTimeMilliseconds());
        return q.ExecuteScalar() is true;
    });

    public List<ApiTokenEntry> ApiTokens() => Run(c =>
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        using var q = Command(c, null, "SELECT name, role, created, expires, revoked_at FROM api_tokens ORDER BY created, hash");
        using var r = q.ExecuteReader();
        var result = new List<ApiTokenEntry>();
        while (r.Read())
        {
            var state = !r.IsDBNull(4) ? "revoked" : !r.IsDBNull(3) && r.GetInt64(3) <= now ? "expired" : "active";
            result.Add(new ApiTokenEntry(r.GetString(0), r.GetString(1), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(2)), Time(r, 3), Time(r, 4), state));
        }

        return result;
    });

    public List<string> RevokeApiTokens(string name, DateTimeOffset now) => Run(c =>
        Strings(c, $"UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND {Active} RETURNING hash", name, now.ToUnixTimeMilliseconds()));

    public void RemoveApiTokens(string name, string? except) => Run(c =>
        Exec(c, null, "DELETE FROM api_tokens WHERE name = $1 AND hash IS DISTINCT FROM $2", name, P(NpgsqlDbType.Text, except)));

    /// <summary>At most this many quarantined batches are kept (the oldest go first), as in the LiteDB store.</summary>
    private const int MaxQuarantined = 1000;

    public void Quarantine(QuarantinedBatch b) => Run(c =>
    {
        using var t = c.BeginTransaction();
        Exec(c, t, "INSERT INTO quarantine (device, at, reason, n, records) VALUES ($1, $2, $3, $4, $5)",
            b.Device, b.At.ToUnixTimeMilliseconds(), b.Reason, b.Records, b.RecordsJson);
        Exec(c, t, "DELETE FROM quarantine WHERE id <= (SELECT id FROM quarantine ORDER BY id DESC OFFSET $1 LIMIT 1)", MaxQuarantined);
        t.Commit();
    });

    public List<QuarantinedBatch> Quarantined(string? device, int limit) => Run(c =>
    {
        using var q = Command(c, null, "SELECT id, device, at, reason, n, records FROM quarantine WHERE ($1::text IS NULL OR device = $1) ORDER BY id DESC LIMIT $2",
            P(NpgsqlDbType.Text, device), limit);
        using var r = q.ExecuteReader();
        var result = new List<QuarantinedBatch>();
        while (r.Read())
        {
            result.Add(new QuarantinedBatch(r.GetInt64(0), r.GetString(1), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(2)), r.GetString(3), r.GetInt32(4), r.GetString(5)));
        }

        return result;
    });

    private static List<string> Strings(NpgsqlConnection c, string sql, params object?[] args)
    {
        using var q = Command(c, null, sql, args);
        using var r = q.ExecuteReader();
        var result = new List<string>();
        while (r.Read()) result.Add(r.GetString(0));
        return result;
    }
}
