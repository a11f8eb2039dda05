using LiteDB;

namespace EdgeMl.FleetHub.Store;

/// <summary>
/// The hub's embedded store (LiteDB, one data directory). A telemetry batch is one document; duplicates are
/// dropped with a sequence watermark per (device, boot, record class) plus the ranges stored above it
/// (<see cref="SeqSet"/>), written in the same transaction as the batch, so a record is stored exactly once
/// however often, and in whatever order, the device re-sends it. (Per the issue: one
/// document per record with a unique index cannot reach the ingest target on LiteDB.)
/// </summary>
public sealed partial class LiteDbHubStore : IHubStore
{
    private readonly LiteDatabase _db;
    private readonly ILiteCollection<BsonDocument> _batches;
    private readonly ILiteCollection<BsonDocument> _marks;
    private readonly ILiteCollection<BsonDocument> _devices;
    private readonly ILiteCollection<BsonDocument> _apiTokens;
    private readonly ILiteCollection<BsonDocument> _models;
    private readonly ILiteCollection<BsonDocument> _summaries;
    private readonly ILiteCollection<BsonDocument> _presence;
    private readonly ILiteCollection<BsonDocument> _alerts;
    private readonly Lock _gate = new();
    private readonly string _directory;
    private long _lastBatchId;

    /// <summary>Separates the device from the batch number in a batch's <c>key</c> (device ids never contain it).</summary>
    private const char KeySeparator = '\u001f';

    /// <summary>Bytes of <c>hub.db</c>, LiteDB's log beside it and the model packages under <c>models/</c>.</summary>
    public long SizeBytes()
    {
        long total = 0;
        foreach (var f in new DirectoryInfo(_directory).EnumerateFiles("hub*.db"))
        {
            total += f.Length;
        }

        var models = new DirectoryInfo(Path.Combine(_directory, "models"));
        if (models.Exists)
        {
            foreach (var f in models.EnumerateFiles("*", SearchOption.AllDirectories)) total += f.Length;
        }

        return total;
    }

    /// <summary>Opens (or creates) the store in <paramref name="directory"/>: <c>hub.db</c> and <c>models/</c> (the packages).</summary>
    public LiteDbHubStore(string directory)
    {
        _directory = directory;
        Directory.CreateDirectory(directory);
        _db = new LiteDatabase(new ConnectionString { Filename = Path.Combine(directory, "hub.db"), Connection = ConnectionType.Direct });
        _batches = _db.GetCollection("batches", BsonAutoId.Int64);
        _marks = _db.GetCollection("watermarks");
        _devices = _db.GetCollection("devices");
        _apiTokens = _db.GetCollection("apitokens");
        _models = _db.GetCollection("models");
        _batches.EnsureIndex("device", "$.device");
        // key = device + separator + batch number: a device's newest batches are read from this index, newest first, without
        // loading the device's history; received: retention deletes by it.
        _batches.EnsureIndex("key", "$.key");
        _batches.EnsureIndex("received", "$.received");
        _devices.EnsureIndex("tokenHash", "$.tokenHash");
        _lastBatchId = _batches.Count() == 0 ? 0 : _batches.Max().AsInt64;
        AddBatchKeys();
        _summaries = _db.GetCollection("devicesummaries");
        _presence = _db.GetCollection("presence", BsonAutoId.Int64);
        _alerts = _db.GetCollection("alerts", BsonAutoId.Int64);
        _presence.EnsureIndex("key", "$.key");
        _presence.EnsureIndex("at", "$.at");
        _alerts.EnsureIndex("active", "$.active");
        _alerts.EnsureIndex("raisedAt", "$.raisedAt");
        _alerts.EnsureIndex("clearedAt", "$.clearedAt");
        AddSummaries();
    }

    /// <summary>Batches written before the <c>key</c> field existed get it (once; later opens find none without it).</summary>
    private void AddBatchKeys()
    {
        var old = _batches.Find(Query.EQ("key", BsonValue.Null)).ToList();
        if (old.Count == 0) return;
        _db.BeginTrans();
        foreach (var b in old)
        {
            b["key"] = BatchKey(b["device"].AsString, b["_id"].AsInt64);
            _batches.Update(b);
        }

        _db.Commit();
    }

    private static string BatchKey(string device, long id) => $"{device}{KeySeparator}{id:D19}";

    /// <summary>Stores the records of a batch not stored before; returns how many were new.</summary>
    public int StoreBatch(string device, IReadOnlyList<IncomingRecord> records, DateTimeOffset receivedAt) =>
        StoreBatches([(device, records)], receivedAt);

    /// <summary>
    /// Stores several devices' batches in one transaction (group commit), in order: each batch becomes one
    /// document of the records not stored before. Returns how many records were new.
    /// </summary>
    public int StoreBatches(IReadOnlyList<(string Device, IReadOnlyList<IncomingRecord> Records)> batches, DateTimeOffset receivedAt)
    {
        lock (_gate)
        {
            _db.BeginTrans();
            try
            {
                var marks = new Dictionary<string, (BsonDocument Doc, SeqSet Seen)>();
                var devices = new Dictionary<string, BsonDocument>();
                var total = 0;
                var received = receivedAt.ToUnixTimeMilliseconds();
                foreach (var (device, records) in batches)
                {
                    var fresh = new BsonArray();
                    foreach (var r in records)
                    {
                        var key = $"{device}|{r.Boot}|{r.Class}";
                        if (!marks.TryGetValue(key, out var mark))
                        {
                            var doc = _marks.FindById(key) ?? new BsonDocument { ["_id"] = key, ["seq"] = 0L };
                            marks[key] = mark = (doc, Seen(doc));
                        }

                        if (!mark.Seen.Add(r.Seq)) continue; // already stored
                        fresh.Add(new BsonDocument { ["boot"] = r.Boot, ["seq"] = r.Seq, ["class"] = r.Class, ["at"] = r.At, ["data"] = r.Data });
                    }

                    if (fresh.Count == 0) continue;
                    var id = ++_lastBatchId;
                    _batches.Insert(new BsonDocument
                    {
                        ["_id"] = id, ["device"] = device, ["key"] = BatchKey(device, id), ["received"] = received, ["n"] = fresh.Count, ["records"] = fresh,
                    });
                    if (!devices.TryGetValue(device, out var d)) devices[device] = d = Device(device);
                    NoteClasses(d, fresh);
                    d["records"] = d["records"].AsInt64 + fresh.Count;
                    d["lastSeen"] = received;
                    foreach (var r in fresh)
                    {
                        // The device's clock orders its reports, but never past the hub's: a report from the far future must not
                        // stay "latest" for ever.
                        if (r["class"].AsString == "health") NoteHealth(d, Math.Min(r["at"].AsInt64, received), r["data"].AsString);
                    }

                    total += fresh.Count;
                }

                foreach (var (_, (doc, seen)) in marks)
                {
                    if (!seen.Changed) continue;
                    doc["seq"] = seen.Watermark;
                    if (seen.Ranges.Count == 0) doc.Remove("ranges");
                    else doc["ranges"] = new BsonArray(seen.Ranges.Select(x => new BsonArray { x.Lo, x.Hi }));
                    _marks.Upsert(doc);
                }

                foreach (var d in devices.Values) SaveDevice(d);
                _db.Commit();
                return total;
            }
            catch
            {
                _db.Rollback();
                _lastBatchId = _batches.Count() == 0 ? 0 : _batches.Max().AsInt64;
                ReloadRows();
                throw;
            }
        }
    }

    /// <summary>
    /// Keeps on the device document which record classes it ever stored (<c>classes</c>), so that asking for a class it never
    /// sent (a device without alerts, drift or telemetry) answers at once instead of reading every batch it has. Only a device
    /// whose first records are stored with this field gets it: one stored by an older hub has none, and is read in full as before.
    /// </summary>
    private static void NoteClasses(BsonDocument d, BsonArray fresh)
    {
        BsonDocument classes;
        if (d.TryGetValue("classes", out var c) && c.IsDocument) classes = c.AsDocument;
        else if (d["records"].AsInt64 == 0) d["classes"] = classes = new BsonDocument();
        else return;
        foreach (var r in fresh) classes[r["class"].AsString] = true;
    }

    /// <summary>Whether the device is known never to have stored a record of <paramref name="recordClass"/> (<see cref="NoteClasses"/>).</summary>
    private bool NeverStored(string device, string? recordClass)
    {
        if (recordClass is null) return false;
        var d = _devices.FindById(device);
        return d is not null && d["_id"].AsString == device && d.TryGetValue("classes", out var c) && c.IsDocument && !c.AsDocument.ContainsKey(recordClass);
    }

    /// <summary>What a watermark document says is stored: <c>seq</c> (all up to it) and <c>ranges</c> above it.</summary>
    private static SeqSet Seen(BsonDocument doc) =>
        new(doc["seq"].AsInt64, doc.TryGetValue("ranges", out var r) && r.IsArray ? r.AsArray.Select(x => (x.AsArray[0].AsInt64, x.AsArray[1].AsInt64)) : null);

    public void SetPresence(string device, string state, string? boot, DateTimeOffset at)
    {
        lock (_gate)
        {
            var d = Device(device);
            var changed = d["presence"].AsString != state;
            d["presence"] = state;
            if (boot is not null) d["boot"] = boot;
            // Last seen is when the hub last heard from the device: an "online" status is the device speaking; "offline" is
            // the broker's Last Will (or the hub's own revocation) saying it went away, which tells nothing new about when
            // it was last heard.
            if (state == "online") d["lastSeen"] = at.ToUnixTimeMilliseconds();
            _db.BeginTrans();
            SaveDevice(d);
            if (changed) NotePresence(device, state, at);
            _db.Commit();
        }
    }

    public List<DeviceEntry> Devices()
    {
        lock (_gate) return _devices.FindAll().Select(Entry).ToList();
    }

    public DeviceEntry? FindDevice(string id)
    {
        // LiteDB compares ids ignoring case: a device is only ever its exact id.
        lock (_gate) return _devices.FindById(id) is { } d && d["_id"].AsString == id ? Entry(d) : null;
    }

    /// <summary>The newest stored records of a device, newest first; only those of <paramref name="recordClass"/> when given.</summary>
    public List<HubRecord> Records(string device, int limit, string? recordClass = null)
    {
        lock (_gate)
        {
            var result = new List<HubRecord>();
            if (limit <= 0 || NeverStored(device, recordClass)) return result;
            // The key index in descending order, read lazily: only the batches needed for `limit` records are loaded.
            var newestFirst = _batches.Query()
                .Where(Query.Between("$.key", BatchKey(device, 0), $"{device}{KeySeparator}\uffff"))
                .OrderByDescending("$.key").ToEnumerable();
            foreach (var batch in newestFirst)
            {
                foreach (var r in batch["records"].AsArray.Reverse())
                {
                    if (recordClass is not null && r["class"].AsString != recordClass) continue;
                    result.Add(new HubRecord(r["boot"].AsString, r["seq"].AsInt64, r["class"].AsString, r["at"].AsInt64, r["data"].AsString));
                    if (result.Count >= limit) return result;
                }
            }

            return result;
        }
    }

    /// <summary>One process owns a LiteDB store: it always leads.</summary>
    public bool Leads(string work) => true;

    /// <summary>One process leads everything on the embedded store: nothing to give up.</summary>
    public void Release(string work)
    {
    }

    // One hub on this store: its broker session needs no one to take it over, so it is kept in memory only.
    private readonly SortedSet<string> _brokerSessions = new(StringComparer.Ordinal);

    public void RememberBrokerSession(string clientId)
    {
        lock (_brokerSessions) _brokerSessions.Add(clientId);
    }

    public void ForgetBrokerSession(string clientId)
    {
        lock (_brokerSessions) _brokerSessions.Remove(clientId);
    }

    public IReadOnlyList<string> BrokerSessions()
    {
        lock (_brokerSessions) return [.. _brokerSessions];
    }

    private readonly Dictionary<string, (HashSet<string> Items, bool Lost)> _signals = new(StringComparer.Ordinal);

    /// <summary>One process: the items wait in memory for <see cref="TakeSignals"/>.</summary>
    public void Signal(string work, IReadOnlyCollection<string> items)
    {
        lock (_signals)
        {
            if (!_signals.TryGetValue(work, out var box)) _signals[work] = box = (new HashSet<string>(StringComparer.Ordinal), true);
            box.Items.UnionWith(items);
        }
    }

    public SignalBatch TakeSignals(string work)
    {
        lock (_signals)
        {
            if (!_signals.TryGetValue(work, out var box)) box = (new HashSet<string>(StringComparer.Ordinal), true);
            _signals[work] = (new HashSet<string>(StringComparer.Ordinal), false);
            return new SignalBatch([.. box.Items], box.Lost);
        }
    }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, SemaphoreSlim> _exclusive = new(StringComparer.Ordinal);

    /// <summary>One process uses this store: a lock per kind of work in this process.</summary>
    public IDisposable Exclusive(string work)
    {
        var gate = _exclusive.GetOrAdd(work, static _ => new SemaphoreSlim(1, 1));
        gate.Wait();
        return new Releaser(gate);
    }

    private sealed class Releaser(SemaphoreSlim gate) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) gate.Release();
        }
    }

    public long RemoveRecordsBefore(DateTimeOffset cutoff)
    {
        var before = cutoff.ToUnixTimeMilliseconds();
        RemoveFleetHistoryBefore(before);
        long removed = 0;
        while (true)
        {
            // In slices, so that ingest is not held up for long by a large first clean-up.
            lock (_gate)
            {
                var old = _batches.Query().Where(Query.LT("$.received", before)).Limit(5000).ToEnumerable()
                    .Select(b => (Id: b["_id"], N: b["n"].AsInt32)).ToList();
                if (old.Count == 0) return removed;
                _db.BeginTrans();
                foreach (var (id, _) in old) _batches.Delete(id);
                _db.Commit();
                removed += old.Sum(b => b.N);
            }
        }
    }

    private BsonDocument Device(string id) =>
        _devices.FindById(id) ?? new BsonDocument { ["_id"] = id, ["presence"] = "unknown", ["records"] = 0L, ["lastSeen"] = 0L, ["revoked"] = false };

    public void Dispose() => _db.Dispose();
}

