using System.Text;
using System.Text.Json;
using Npgsql;
using NpgsqlTypes;

namespace EdgeMl.FleetHub.Store;

/// <summary>
/// What the dashboard reads, in SQL: counts with <c>GROUP BY GROUPING SETS</c>; the fleet table filtered, sorted
/// (text in the "C" collation, so that both stores order alike) and paged by the database over the device columns
/// (never the health JSON); presence changes and alerts as rows.
/// </summary>
public sealed partial class PostgresHubStore
{
    private const string PresenceSql = "(CASE WHEN presence = 'online' THEN 'online' WHEN last_seen <= 0 THEN 'neverSeen' ELSE 'offline' END)";

    private const string EnrollmentSql =
        "(CASE WHEN revoked THEN 'revoked' WHEN secret_hash IS NOT NULL THEN 'enrolled' WHEN token_hash IS NOT NULL THEN 'pending' ELSE 'unregistered' END)";

    private const string RowColumns = $"""
        id, grp, tags, {PresenceSql}, last_seen, {EnrollmentSql}, model, model_version, latency_p99_ms, cpu_percent, memory_percent, temperature_c,
        outbox_depth, outbox_dropped, drift_status, healthy, problems
        """;

    private static DeviceRow Row(NpgsqlDataReader r) => new(
        r.GetString(0), Text(r, 1), Text(r, 2) is { } json ? JsonSerializer.Deserialize<Dictionary<string, string>>(json) ?? [] : [], r.GetString(3), Time(r, 4),
        r.GetString(5), Text(r, 6), Text(r, 7), Double(r, 8), Double(r, 9), Double(r, 10), Double(r, 11), Long(r, 12), Long(r, 13), Text(r, 14),
        r.IsDBNull(15) ? null : r.GetBoolean(15), Text(r, 16));

    private static double? Double(NpgsqlDataReader r, int i) => r.IsDBNull(i) ? null : r.GetDouble(i);

    private static long? Long(NpgsqlDataReader r, int i) => r.IsDBNull(i) ? null : r.GetInt64(i);

    public List<DeviceRow> DeviceRows() => Run(c =>
    {
        using var q = Command(c, null, $"SELECT {RowColumns} FROM devices");
        using var r = q.ExecuteReader();
        var rows = new List<DeviceRow>();
        while (r.Read()) rows.Add(Row(r));
        return rows;
    });

    public FleetSummary Summary() => Run(c =>
    {
        FleetCounts? fleet = null;
        var groups = new List<FleetCounts>();
        using (var q = Command(c, null, $"""
            SELECT GROUPING(grp) = 1, grp, count(*), count(*) FILTER (WHERE {PresenceSql} = 'online'), count(*) FILTER (WHERE {PresenceSql} = 'offline'),
                count(*) FILTER (WHERE {PresenceSql} = 'neverSeen'), count(*) FILTER (WHERE healthy = false), count(*) FILTER (WHERE drift_status IN ('moderate', 'major'))
            FROM devices GROUP BY GROUPING SETS ((grp), ()) ORDER BY 1, grp COLLATE "C"
            """))
        using (var r = q.ExecuteReader())
        {
            while (r.Read())
            {
                var counts = new FleetCounts(Text(r, 1), r.GetInt64(2), r.GetInt64(3), r.GetInt64(4), r.GetInt64(5), r.GetInt64(6), r.GetInt64(7));
                if (r.GetBoolean(0)) fleet = counts with { Group = null };
                else if (counts.Group is not null) groups.Add(counts);
            }
        }

        var models = new List<ModelCount>();
        using (var q = Command(c, null, """
            SELECT model, coalesce(model_version, ''), count(*) FROM devices WHERE model IS NOT NULL GROUP BY 1, 2 ORDER BY model COLLATE "C", coalesce(model_version, '') COLLATE "C"
            """))
        using (var r = q.ExecuteReader())
        {
            while (r.Read()) models.Add(new ModelCount(r.GetString(0), r.GetString(1), r.GetInt64(2)));
        }

        return new FleetSummary(fleet ?? new FleetCounts(null, 0, 0, 0, 0, 0, 0), groups, models);
    });

    /// <summary>The SQL of each sort field (<see cref="DeviceQuery.SortFields"/>): a value, or NULL for rows that have none (they go last).</summary>
    private static string SortSql(string field) => field switch
    {
        "group" => "grp COLLATE \"C\"",
        "presence" => $"{PresenceSql} COLLATE \"C\"",
        "lastSeen" => "(CASE WHEN last_seen > 0 THEN last_seen END)",
        "model" => "(CASE WHEN model IS NOT NULL THEN model || '@' || coalesce(model_version, '') END) COLLATE \"C\"",
        "p99Ms" => "latency_p99_ms",
        "cpuPercent" => "cpu_percent",
        "temperatureC" => "temperature_c",
        "outboxDepth" => "outbox_depth",
        "driftStatus" => "(CASE WHEN drift_status IS NULL THEN NULL WHEN drift_status = 'ok' THEN 1 WHEN drift_status = 'watch' THEN 2 " +
                         "WHEN drift_status = 'moderate' THEN 3 WHEN drift_status = 'major' THEN 4 ELSE 0 END)",
        "id" => "id COLLATE \"C\"",
        _ => throw new ArgumentException($"sort field '{field}' is not one of {string.Join(", ", DeviceQuery.SortFields)}", nameof(field)),
    };

    public DevicePage QueryDevices(DeviceQuery query) => Run(c =>
    {
        var where = new StringBuilder("TRUE");
        var args = new List<object?>();
        string Arg(object? value)
        {
            args.Add(value); // plain values: the count and the page each make their own parameters of them
            return $"${args.Count}";
        }

        if (query.Q is not null)
        {
            var q = Arg(query.Q.ToLowerInvariant());
            where.Append($" AND (strpos(lower(id), {q}) > 0 OR strpos(lower(coalesce(grp, '')), {q}) > 0)");
        }

        if (query.Group is not null) where.Append($" AND grp = {Arg(query.Group)}");
        if (query.Status is { } status)
        {
            where.Append(status switch
            {
                FleetPresence.Online or FleetPresence.Offline or FleetPresence.NeverSeen => $" AND {PresenceSql} = {Arg(status)}",
                "unhealthy" => " AND healthy = false",
                _ => $" AND {EnrollmentSql} = {Arg(status)}",
            });
        }

        if (query.Model is not null) where.Append($" AND model = {Arg(query.Model)}");
        if (query.ModelVersion is not null) where.Append($" AND model_version = {Arg(query.ModelVersion)}");
        if (query.TagKey is not null)
        {
            where.Append(query.TagValue is null
                ? $" AND jsonb_exists(tags::jsonb, {Arg(query.TagKey)})"
                : $" AND (tags::jsonb ->> {Arg(query.TagKey)}) = {Arg(query.TagValue)}");
        }

        if (query.Drift is { } drift)
        {
            where.Append(drift switch
            {
                "drifting" => " AND drift_status IN ('moderate', 'major')",
                "none" => " AND (drift_status IS NULL OR drift_status NOT IN ('ok', 'watch', 'moderate', 'major'))",
                _ => $" AND drift_status = {Arg(drift)}",
            });
        }

        long total;
        using (var count = Command(c, null, $"SELECT count(*) FROM devices WHERE {where}", args.ToArray()))
        {
            total = Convert.ToInt64(count.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
        }

        var direction = query.Descending ? "DESC" : "ASC";
        var tie = query.Sort == "id" && query.Descending ? "DESC" : "ASC";
        var limit = Arg((long)query.PageSize);
        var offset = Arg(query.Offset);
        using var page = Command(c, null, $"""
            SELECT {RowColumns} FROM devices WHERE {where}
            ORDER BY {SortSql(query.Sort)} {direction} NULLS LAST, id COLLATE "C" {tie}
            LIMIT {limit} OFFSET {offset}
            """, args.ToArray());
        using var r = page.ExecuteReader();
        var items = new List<DeviceRow>();
        while (r.Read()) items.Add(Row(r));
        return new DevicePage(total, query.Page, query.PageSize, items);
    });

    /// <summary>
    /// From the key (device, class, at, boot, seq) in the day partitions the range touches: the database reads at most
    /// <paramref name="limit"/> rows. Without a class, as <see cref="Records"/> does it (the device's classes found by
    /// skipping through the key, the newest of each): first the part of the range in the last two days (a device that is
    /// sending), then, for what is still missing, the part before it; each query pruned to the partitions of its part.
    /// </summary>
    public List<HubRecord> RecordsBetween(string device, string? recordClass, DateTimeOffset? since, DateTimeOffset? until, int limit) => Run(c =>
    {
        var result = new List<HubRecord>();
        if (limit <= 0) return result;
        if (recordClass is null)
        {
            var from = since?.ToUnixTimeMilliseconds() ?? long.MinValue;
            var to = until?.ToUnixTimeMilliseconds() ?? long.MaxValue;
            if (from >= to) return result;
            var recent = Math.Clamp(DateTimeOffset.UtcNow.AddDays(-2).ToUnixTimeMilliseconds(), from, to);
            if (recent < to) RecordsIn(c, device, limit, null, recent, to, result);
            if (result.Count < limit && from < recent) RecordsIn(c, device, limit - result.Count, null, from, recent, result);
            return result;
        }

        using var q = Command(c, null, """
            SELECT boot, seq, class, at, data FROM records WHERE device = $1 AND class = $2 AND at >= $3 AND at < $4 ORDER BY at DESC, boot DESC, seq DESC LIMIT $5
            """, device, recordClass, since?.ToUnixTimeMilliseconds() ?? long.MinValue, until?.ToUnixTimeMilliseconds() ?? long.MaxValue, limit);
        using var r = q.ExecuteReader();
        while (r.Read()) result.Add(new HubRecord(r.GetString(0), r.GetInt64(1), r.GetString(2), r.GetInt64(3), r.GetString(4)));
        return result;
    });

    /// <summary>
    /// One query for all devices: each device's newest rows from the key (device, class, at, boot, seq) in the partitions
    /// from <paramref name="since"/> on (a lateral join over the array of ids, in its order).
    /// </summary>
    public List<(string Device, HubRecord Record)> RecordsOfDevices(IReadOnlyList<string> devices, string recordClass, DateTimeOffset since, int limitPerDevice) => Run(c =>
    {
        var result = new List<(string, HubRecord)>();
        if (limitPerDevice <= 0 || devices.Count == 0) return result;
        using var q = Command(c, null, """
            SELECT d.id, n.boot, n.seq, n.class, n.at, n.data FROM unnest($1::text[]) WITH ORDINALITY AS d(id, o)
            CROSS JOIN LATERAL (
                SELECT boot, seq, class, at, data FROM records r WHERE r.device = d.id AND r.class = $2 AND r.at >= $3
                ORDER BY r.at DESC, r.boot DESC, r.seq DESC LIMIT $4) n
            ORDER BY d.o, n.at DESC, n.boot DESC, n.seq DESC
            """, P(NpgsqlDbType.Array | NpgsqlDbType.Text, devices.ToArray()), recordClass, since.ToUnixTimeMilliseconds(), limitPerDevice);
        using var r = q.ExecuteReader();
        while (r.Read()) result.Add((r.GetString(0), new HubRecord(r.GetString(1), r.GetInt64(2), r.GetString(3), r.GetInt64(4), r.GetString(5))));
        return result;
    });

    public List<PresenceChange> PresenceHistory(string device, DateTimeOffset since, int limit) => Run(c =>
    {
        var result = new List<(long At, long Id, string Presence)>();
        using var q = Command(c, null, """
            (SELECT at, id, presence FROM presence_log WHERE device = $1 AND at < $2 ORDER BY at DESC, id DESC LIMIT 1)
            UNION ALL
            (SELECT at, id, presence FROM presence_log WHERE device = $1 AND at >= $2 ORDER BY at, id LIMIT $3)
            """, device, since.ToUnixTimeMilliseconds(), limit);
        using var r = q.ExecuteReader();
        while (r.Read()) result.Add((r.GetInt64(0), r.GetInt64(1), r.GetString(2)));
        return result.OrderBy(p => p.At).ThenBy(p => p.Id).Take(limit).Select(p => new PresenceChange(DateTimeOffset.FromUnixTimeMilliseconds(p.At), p.Presence)).ToList();
    });

    private const string AlertColumns = "id, kind, device, subject, raised_at, cleared_at, severity, message";

    private static AlertEntry Alert(NpgsqlDataReader r) => new(
        r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(4)),
        r.IsDBNull(5) ? null : DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(5)), r.GetString(6), r.GetString(7));

    /// <summary>One statement; the partial unique index on active alerts makes a second raise (from any replica) a no-op.</summary>
    public AlertEntry? RaiseAlert(string kind, string device, string subject, DateTimeOffset at, string severity, string message) => Run(c =>
    {
        using var q = Command(c, null, $"""
            INSERT INTO alerts (kind, device, subject, raised_at, severity, message) VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT DO NOTHING RETURNING {AlertColumns}
            """, kind, device, subject, at.ToUnixTimeMilliseconds(), severity, message);
        using var r = q.ExecuteReader();
        return r.Read() ? Alert(r) : null;
    });

    public AlertEntry? ClearAlert(string kind, string device, string subject, DateTimeOffset at) => Run(c =>
    {
        using var q = Command(c, null, $"""
            UPDATE alerts SET cleared_at = greatest($4, raised_at) WHERE kind = $1 AND device = $2 AND subject = $3 AND cleared_at IS NULL
            RETURNING {AlertColumns}
            """, kind, device, subject, at.ToUnixTimeMilliseconds());
        using var r = q.ExecuteReader();
        return r.Read() ? Alert(r) : null;
    });

    public List<AlertEntry> Alerts(AlertQuery query) => Run(c =>
    {
        var where = new StringBuilder("TRUE");
        var args = new List<object?>();
        if (query.Active is { } active) where.Append(active ? " AND cleared_at IS NULL" : " AND cleared_at IS NOT NULL");
        if (query.Kind is not null)
        {
            args.Add(query.Kind);
            where.Append($" AND kind = ${args.Count}");
        }

        if (query.Device is not null)
        {
            args.Add(query.Device);
            where.Append($" AND device = ${args.Count}");
        }

        if (query.Since is { } since)
        {
            args.Add(since.ToUnixTimeMilliseconds());
            where.Append($" AND raised_at >= ${args.Count}");
        }

        args.Add((long)query.Limit);
        using var q = Command(c, null, $"SELECT {AlertColumns} FROM alerts WHERE {where} ORDER BY raised_at DESC, id DESC LIMIT ${args.Count}", args.ToArray());
        using var r = q.ExecuteReader();
        var result = new List<AlertEntry>();
        while (r.Read()) result.Add(Alert(r));
        return result;
    });
}
