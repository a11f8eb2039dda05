using LiteDB;

namespace EdgeMl.FleetHub.Store;

/// <summary>
/// What the dashboard reads: a compact summary document per device (<c>devicesummaries</c>: the fleet table's columns,
/// written with the device document in the same transaction) so that counting, filtering, sorting and paging 10,000
/// devices never reads a device's health JSON or history; presence changes (<c>presence</c>, at most
/// <see cref="PresencePerDevice"/> per device, removed by retention); alerts (<c>alerts</c>).
/// <para>
/// The summaries are also kept in memory as <see cref="DeviceRow"/>s (<see cref="_rows"/>, loaded once at open, changed
/// with every write of a device document): one process owns a LiteDB file, so no other writer can change them, and the
/// fleet table and counts then cost a filter and sort over 10,000 small records (a few ms) instead of reading and
/// deserialising 10,000 documents (~300 ms), without waiting for the store's lock behind ingest.
/// </para>
/// </summary>
public sealed partial class LiteDbHubStore
{
    /// <summary>Every device's row by its exact id; replaced whole per device (rows are immutable records).</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, DeviceRow> _rows = new(StringComparer.Ordinal);

    /// <summary>Presence changes kept per device (the oldest go first): a device flapping in a loop cannot fill the disk.</summary>
    internal const int PresencePerDevice = 2000;

    /// <summary>
    /// With a since filter, batches received up to this long before since are still read: a record is normally received after
    /// it was produced, but a device clock running ahead can make it look older than its batch.
    /// </summary>
    private const long ClockLeewayMs = 10 * 60_000;

    private void SaveDevice(BsonDocument d)
    {
        _devices.Upsert(d);
        var compact = Compact(d);
        _summaries.Upsert(compact);
        var row = Row(compact);
        _rows[row.Id] = row;
    }

    /// <summary>Summaries for devices stored before they existed (once: later opens find them all); then the rows in memory.</summary>
    private void AddSummaries()
    {
        if (_summaries.Count() != _devices.Count())
        {
            _db.BeginTrans();
            foreach (var d in _devices.FindAll().ToList()) _summaries.Upsert(Compact(d));
            _db.Commit();
        }

        ReloadRows();
    }

    /// <summary>The rows in memory as the file has them: at open, and after a rolled-back transaction (whose rows were changed already).</summary>
    private void ReloadRows()
    {
        lock (_gate)
        {
            _rows.Clear();
            foreach (var c in _summaries.FindAll()) _rows[c["_id"].AsString] = Row(c);
        }
    }

    private static BsonDocument Compact(BsonDocument d)
    {
        var c = new BsonDocument { ["_id"] = d["_id"], ["enrollment"] = Enrollment(d) };
        foreach (var key in (string[])["group", "tags", "presence", "lastSeen", "model", "modelVersion", "latencyP99Ms", "cpuPercent", "memoryPercent", "temperatureC",
                     "outboxDepth", "outboxDropped", "driftStatus", "healthy", "problems"])
        {
            if (d.TryGetValue(key, out var v) && !v.IsNull) c[key] = v;
        }

        return c;
    }

    private static string Enrollment(BsonDocument d) =>
        d["revoked"].AsBoolean ? "revoked" : d.ContainsKey("secretHash") ? "enrolled" : d.ContainsKey("tokenHash") ? "pending" : "unregistered";

    private static DeviceRow Row(BsonDocument c)
    {
        var lastSeen = Time(c, "lastSeen");
        var tags = c.TryGetValue("tags", out var t) && t.IsDocument ? t.AsDocument.ToDictionary(kv => kv.Key, kv => kv.Value.AsString) : [];
        return new DeviceRow(
            c["_id"].AsString, Text(c, "group"), tags, FleetPresence.Of(c.TryGetValue("presence", out var p) ? p.AsString : "unknown", lastSeen), lastSeen,
            c["enrollment"].AsString, Text(c, "model"), Text(c, "modelVersion"), Double(c, "latencyP99Ms"), Double(c, "cpuPercent"), Double(c, "memoryPercent"),
            Double(c, "temperatureC"), Long(c, "outboxDepth"), Long(c, "outboxDropped"), Text(c, "driftStatus"),
            c.TryGetValue("healthy", out var h) && h.IsBoolean ? h.AsBoolean : null, Text(c, "problems"));
    }

    private static double? Double(BsonDocument d, string key) => d.TryGetValue(key, out var v) && v.IsNumber ? v.AsDouble : null;

    /// <summary>Every device's compact row (from memory: the summary documents as written).</summary>
    public List<DeviceRow> DeviceRows() => [.. _rows.Values];

    public FleetSummary Summary() => FleetRows.Summarize(DeviceRows());

    public DevicePage QueryDevices(DeviceQuery query) => FleetRows.Page(DeviceRows(), query);

    /// <summary>Appends a presence change (inside the caller's transaction) and keeps the device's newest <see cref="PresencePerDevice"/>.</summary>
    private void NotePresence(string device, string state, DateTimeOffset at)
    {
        var ms = at.ToUnixTimeMilliseconds();
        _presence.Insert(new BsonDocument { ["device"] = device, ["at"] = ms, ["presence"] = state, ["key"] = PresenceKey(device, ms) });
        var over = _presence.Count(Query.Between("key", PresenceKey(device, 0), $"{device}{KeySeparator}\uffff")) - PresencePerDevice;
        if (over <= 0) return;
        var oldest = _presence.Query().Where(Query.Between("$.key", PresenceKey(device, 0), $"{device}{KeySeparator}\uffff")).OrderBy("$.key").Limit(over)
            .ToEnumerable().Select(p => p["_id"]).ToList();
        foreach (var id in oldest) _presence.Delete(id);
    }

    private static string PresenceKey(string device, long ms) => $"{device}{KeySeparator}{Math.Max(0, ms):D19}";

    public List<PresenceChange> PresenceHistory(string device, DateTimeOffset since, int limit)
    {
        lock (_gate)
        {
            var from = since.ToUnixTimeMilliseconds();
            var all = $"{device}{KeySeparator}\uffff";
            // The change in effect at `since` (the newest before it), then every change after it, oldest first.
            var before = _presence.Query().Where(Query.Between("$.key", PresenceKey(device, 0), PresenceKey(device, from - 1))).OrderByDescending("$.key").Limit(1)
                .ToEnumerable();
            var after = _presence.Query().Where(Query.Between("$.key", PresenceKey(device, from), all)).OrderBy("$.key").ToEnumerable();
            return before.Concat(after).Where(p => p["device"].AsString == device)
                .Select(p => new PresenceChange(DateTimeOffset.FromUnixTimeMilliseconds(p["at"].AsInt64), p["presence"].AsString)).Take(limit).ToList();
        }
    }

    /// <summary>
    /// The records of one class produced (device time <c>at</c>) in [<paramref name="since"/>, <paramref name="until"/>), newest
    /// first by <c>at</c>. Batches are read newest first from the key index and the walk stops at batches received
    /// <see cref="ClockLeewayMs"/> before <paramref name="since"/>.
    /// </summary>
    public List<HubRecord> RecordsBetween(string device, string? recordClass, DateTimeOffset? since, DateTimeOffset? until, int limit)
    {
        lock (_gate)
        {
            if (limit <= 0 || NeverStored(device, recordClass)) return [];
            var from = since?.ToUnixTimeMilliseconds() ?? long.MinValue;
            var to = until?.ToUnixTimeMilliseconds() ?? long.MaxValue;
            // The newest `limit` so far (the oldest of them on top): a batch received more than the clock leeway before that
            // one's time cannot hold anything newer, nor can any batch before it, so the walk stops there.
            var newest = new PriorityQueue<HubRecord, long>(limit + 1);
            var newestFirst = _batches.Query()
                .Where(Query.Between("$.key", BatchKey(device, 0), $"{device}{KeySeparator}\uffff"))
                .OrderByDescending("$.key").ToEnumerable();
            foreach (var batch in newestFirst)
            {
                var received = batch["received"].AsInt64;
                if (since is not null && received < from - ClockLeewayMs) break;
                if (newest.Count == limit && newest.TryPeek(out _, out var oldestKept) && received < oldestKept - ClockLeewayMs) break;
                foreach (var r in batch["records"].AsArray)
                {
                    if (recordClass is not null && r["class"].AsString != recordClass) continue;
                    var at = r["at"].AsInt64;
                    if (at < from || at >= to) continue;
                    newest.Enqueue(new HubRecord(r["boot"].AsString, r["seq"].AsInt64, r["class"].AsString, at, r["data"].AsString), at);
                    if (newest.Count > limit) newest.Dequeue();
                }
            }

            var result = new List<HubRecord>(newest.Count);
            while (newest.TryDequeue(out var r, out _)) result.Add(r);
            result.Reverse();
            return result;
        }
    }

    public List<(string Device, HubRecord Record)> RecordsOfDevices(IReadOnlyList<string> devices, string recordClass, DateTimeOffset since, int limitPerDevice)
    {
        var result = new List<(string, HubRecord)>();
        foreach (var device in devices)
        {
            foreach (var r in RecordsBetween(device, recordClass, since, null, limitPerDevice)) result.Add((device, r));
        }

        return result;
    }

    public AlertEntry? RaiseAlert(string kind, string device, string subject, DateTimeOffset at, string severity, string message)
    {
        lock (_gate)
        {
            var active = AlertKey(kind, device, subject);
            var ms = at.ToUnixTimeMilliseconds();
            // One active alert per key; and the same raise sent again (a batch re-sent after a reconnect) is not a new alert.
            if (_alerts.Find(Query.EQ("active", active)).Any(a => a["active"].AsString == active)) return null;
            if (_alerts.Find(Query.EQ("raisedAt", ms)).Any(a => a["kind"].AsString == kind && a["device"].AsString == device && a["subject"].AsString == subject)) return null;
            var doc = new BsonDocument
            {
                ["kind"] = kind, ["device"] = device, ["subject"] = subject, ["raisedAt"] = ms, ["clearedAt"] = BsonValue.Null, ["severity"] = severity,
                ["message"] = message, ["active"] = active,
            };
            _alerts.Insert(doc);
            return Alert(doc);
        }
    }

    public AlertEntry? ClearAlert(string kind, string device, string subject, DateTimeOffset at)
    {
        lock (_gate)
        {
            var doc = _alerts.Find(Query.EQ("active", AlertKey(kind, device, subject))).FirstOrDefault(a => a["active"].AsString == AlertKey(kind, device, subject));
            if (doc is null) return null;
            doc["clearedAt"] = Math.Max(at.ToUnixTimeMilliseconds(), doc["raisedAt"].AsInt64);
            doc["active"] = BsonValue.Null;
            _alerts.Update(doc);
            return Alert(doc);
        }
    }

    public List<AlertEntry> Alerts(AlertQuery query)
    {
        lock (_gate)
        {
            var since = query.Since?.ToUnixTimeMilliseconds() ?? long.MinValue;
            IEnumerable<BsonDocument> docs = query.Active == true
                ? _alerts.Find(Query.Not("active", BsonValue.Null)).OrderByDescending(a => a["raisedAt"].AsInt64)
                : query.Since is null
                    ? _alerts.Query().OrderByDescending("$.raisedAt").ToEnumerable()
                    : _alerts.Query().Where(Query.GTE("raisedAt", since)).OrderByDescending("$.raisedAt").ToEnumerable(); // from the raisedAt index
            return docs
                .Where(a => a["raisedAt"].AsInt64 >= since)
                .Where(a => query.Active is null || a["active"].IsNull != query.Active.Value)
                .Where(a => query.Kind is null || a["kind"].AsString == query.Kind)
                .Where(a => query.Device is null || a["device"].AsString == query.Device)
                .Take(query.Limit).Select(Alert).ToList();
        }
    }

    /// <summary>Separates the parts of an active alert's key (none of them contains it).</summary>
    private static string AlertKey(string kind, string device, string subject) => $"{kind}{KeySeparator}{device}{KeySeparator}{subject}";

    private static AlertEntry Alert(BsonDocument a) => new(
        a["_id"].AsInt64, a["kind"].AsString, a["device"].AsString, a["subject"].AsString, DateTimeOffset.FromUnixTimeMilliseconds(a["raisedAt"].AsInt64),
        a["clearedAt"].IsNull ? null : DateTimeOffset.FromUnixTimeMilliseconds(a["clearedAt"].AsInt64), a["severity"].AsString, a["message"].AsString);

    /// <summary>Retention of the dashboard's history: presence changes before the cutoff, alerts cleared before it.</summary>
    private void RemoveFleetHistoryBefore(long before)
    {
        lock (_gate)
        {
            _presence.DeleteMany(Query.LT("at", before));
            foreach (var id in _alerts.Find(Query.LT("clearedAt", before)).Where(a => !a["clearedAt"].IsNull).Select(a => a["_id"]).ToList()) _alerts.Delete(id);
        }
    }
}
