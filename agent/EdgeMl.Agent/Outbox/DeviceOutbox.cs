using EdgeMl.Protocol.Health;
using EdgeMl.Protocol.Wire;
using LiteDB;

namespace EdgeMl.Agent.Outbox;

/// <summary>
/// Store-and-forward on the device: every telemetry record, health report and event is written to one
/// LiteDB file (BsonDocument API only: LiteDB's mapper is not AOT-safe) with its (bootId, seq) before it
/// is sent, and leaves only when the broker has acknowledged it. Records are handed out most important
/// class first, oldest first. A byte budget bounds the file: when a record does not fit, older records of
/// the least important class (never a more important one than the new record) are dropped, and the drops
/// are counted per class in the same write, so the counts survive a crash and can be reported later.
/// </summary>
public sealed class DeviceOutbox : IDisposable
{
    private const string RecordsName = "outbox";
    private const string MetaName = "meta";
    private const int CheckpointPages = 64;
    private static readonly RecordClass[] Classes = Enum.GetValues<RecordClass>();

    private readonly LiteDatabase _db;
    private readonly ILiteCollection<BsonDocument> _records;
    private readonly ILiteCollection<BsonDocument> _meta;
    private readonly OutboxSettings _settings;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private readonly long[] _depth = new long[Classes.Length];
    private readonly long[] _dropped = new long[Classes.Length];
    private readonly long[] _expired = new long[Classes.Length];
    private long _bytes;
    private long _nextId;
    private long _nextSeq;

    public DeviceOutbox(string path, OutboxSettings settings, TimeProvider? time = null, bool readOnly = false)
    {
        _settings = settings;
        _time = time ?? TimeProvider.System;
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        try
        {
            _db = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct, ReadOnly = readOnly });
        }
        catch (LiteException e)
        {
            throw new InvalidDataException($"outbox '{path}' cannot be opened: {e.Message}", e);
        }

        _records = _db.GetCollection(RecordsName, BsonAutoId.Int64);
        _meta = _db.GetCollection(MetaName);
        if (!readOnly)
        {
            // LiteDB keeps every page written since the last checkpoint in memory (its log); the default
            // (1,000 pages of 8 kB) let a device's RSS creep up by ~25 MB. A short log keeps it flat.
            _db.Pragma("CHECKPOINT", CheckpointPages);
        }
        if (!readOnly) _records.EnsureIndex("k", "$.k");

        // A new boot: records of earlier boots keep their identity; this boot numbers from 1.
        BootId = Guid.NewGuid().ToString("N")[..16];
        var meta = _meta.FindById("counters");
        if (meta is not null)
        {
            foreach (var c in Classes)
            {
                _dropped[(int)c] = meta["dropped"].AsDocument[c.ToString()].AsInt64;
                _expired[(int)c] = meta["expired"].AsDocument[c.ToString()].AsInt64;
            }
        }

        foreach (var doc in _records.FindAll())
        {
            _depth[doc["c"].AsInt32]++;
            _bytes += doc["n"].AsInt32;
            _nextId = Math.Max(_nextId, doc["_id"].AsInt64); // ids only order records on this device
        }
    }

    /// <summary>This process's boot id: with the sequence number it identifies a record for de-duplication.</summary>
    public string BootId { get; }

    /// <summary>Stores one record durably and returns its sequence number, or 0 when it was dropped for lack of room.</summary>
    public long Append(RecordClass recordClass, byte[] payload)
    {
        lock (_gate)
        {
            // One transaction: evictions, the record and the counters land together or not at all.
            _db.BeginTrans();
            if (!MakeRoom(recordClass, payload.Length, out var evicted))
            {
                _dropped[(int)recordClass]++;
                _meta.Upsert(Counters());
                _db.Commit();
                return 0;
            }

            var seq = ++_nextSeq;
            var id = ++_nextId;
            _records.Insert(new BsonDocument
            {
                ["_id"] = id,
                ["k"] = Key(recordClass, id),
                ["c"] = (int)recordClass,
                ["b"] = BootId,
                ["s"] = seq,
                ["t"] = _time.GetUtcNow().ToUnixTimeMilliseconds(),
                ["n"] = payload.Length,
                ["p"] = payload,
            });
            if (evicted) _meta.Upsert(Counters());
            _db.Commit();
            _depth[(int)recordClass]++;
            _bytes += payload.Length;
            return seq;
        }
    }

    /// <summary>Up to <paramref name="max"/> waiting records, most important class first, oldest first.</summary>
    public List<StoredRecord> Peek(int max)
    {
        lock (_gate)
        {
            return _records.Find(Query.All("k", Query.Ascending), 0, max).Select(ToRecord).ToList();
        }
    }

    /// <summary>
    /// Up to <paramref name="max"/> waiting records of <paramref name="classes"/> (in that order) whose id is in
    /// (<paramref name="afterId"/>, <paramref name="upToId"/>], oldest first: the uplink tells live records
    /// (stored since it connected) from the backlog by id.
    /// </summary>
    public List<StoredRecord> Peek(int max, IReadOnlyList<RecordClass> classes, long afterId = 0, long upToId = MaxId)
    {
        var result = new List<StoredRecord>();
        lock (_gate)
        {
            foreach (var c in classes)
            {
                if (result.Count >= max || _depth[(int)c] == 0 || afterId >= upToId) continue;
                result.AddRange(_records.Find(Query.Between("k", Key(c, afterId + 1), Key(c, upToId)), 0, max - result.Count).Select(ToRecord));
            }
        }

        return result;
    }

    /// <summary>The newest record id so far (ids grow across restarts; they only order records on this device).</summary>
    public long LastId
    {
        get { lock (_gate) return _nextId; }
    }

    private const long MaxId = (1L << 56) - 1;

    /// <summary>Removes records the broker acknowledged.</summary>
    public void Acknowledge(IEnumerable<long> ids)
    {
        lock (_gate)
        {
            _db.BeginTrans();
            foreach (var id in ids)
            {
                if (_records.FindById(id) is { } doc) Remove(doc, counter: null);
            }

            _db.Commit();
        }
    }

    /// <summary>Drops records older than the TTL, counting them per class. Returns how many went.</summary>
    public int Expire()
    {
        if (_settings.TtlHours <= 0) return 0;
        lock (_gate)
        {
            var cutoff = _time.GetUtcNow().AddHours(-_settings.TtlHours).ToUnixTimeMilliseconds();
            var old = _records.Find(Query.LT("t", cutoff)).ToList();
            if (old.Count == 0) return 0;
            _db.BeginTrans();
            foreach (var doc in old)
            {
                Remove(doc, _expired);
            }

            _meta.Upsert(Counters());
            _db.Commit();
            return old.Count;
        }
    }

    public OutboxHealth Health()
    {
        var s = Stats();
        return new OutboxHealth
        {
            Depth = s.Depth.ToDictionary(kv => Name(kv.Key), kv => kv.Value),
            Bytes = s.Bytes,
            MaxBytes = s.MaxBytes,
            Dropped = s.Dropped.ToDictionary(kv => Name(kv.Key), kv => kv.Value),
            Expired = s.Expired.ToDictionary(kv => Name(kv.Key), kv => kv.Value),
            Oldest = s.Oldest,
        };
    }

    public static string Name(RecordClass c) => c.ToString().ToLowerInvariant();

    public OutboxStats Stats()
    {
        lock (_gate)
        {
            var oldest = _records.Query().OrderBy(BsonExpression.Create("$.t")).Limit(1).FirstOrDefault();
            return new OutboxStats(
                Classes.ToDictionary(c => c, c => _depth[(int)c]),
                _bytes,
                _settings.MaxBytes,
                Classes.ToDictionary(c => c, c => _dropped[(int)c]),
                Classes.ToDictionary(c => c, c => _expired[(int)c]),
                oldest is null ? null : DateTimeOffset.FromUnixTimeMilliseconds(oldest["t"].AsInt64));
        }
    }

    /// <summary>
    /// Frees room for a record of <paramref name="size"/> bytes by dropping the oldest records of the least
    /// important classes that are no more important than <paramref name="incoming"/>. False if that is not enough.
    /// </summary>
    private bool MakeRoom(RecordClass incoming, int size, out bool evicted)
    {
        evicted = false;
        var excess = _bytes + size - _settings.MaxBytes;
        if (excess <= 0) return true;
        if (size > _settings.MaxBytes) return false;

        // Enough droppable bytes? Only then drop anything.
        long droppable = 0;
        var victims = new List<BsonDocument>();
        for (var c = Classes.Length - 1; c >= (int)incoming && droppable < excess; c--)
        {
            foreach (var doc in _records.Find(Query.EQ("c", c)).OrderBy(d => d["_id"].AsInt64))
            {
                victims.Add(doc);
                droppable += doc["n"].AsInt32;
                if (droppable >= excess) break;
            }
        }

        if (droppable < excess) return false;

        foreach (var doc in victims)
        {
            Remove(doc, _dropped);
        }

        evicted = true;
        return true;
    }

    /// <summary>Deletes a record inside the caller's transaction, keeping depth and size right and counting it when it was lost.</summary>
    private void Remove(BsonDocument doc, long[]? counter)
    {
        var c = doc["c"].AsInt32;
        _records.Delete(doc["_id"]);
        _depth[c]--;
        _bytes -= doc["n"].AsInt32;
        if (counter is not null) counter[c]++;
    }

    private BsonDocument Counters()
    {
        var dropped = new BsonDocument();
        var expired = new BsonDocument();
        foreach (var c in Classes)
        {
            dropped[c.ToString()] = _dropped[(int)c];
            expired[c.ToString()] = _expired[(int)c];
        }

        return new BsonDocument { ["_id"] = "counters", ["dropped"] = dropped, ["expired"] = expired };
    }

    private static long Key(RecordClass c, long id) => ((long)c << 56) | id;

    private static StoredRecord ToRecord(BsonDocument d) => new(
        d["_id"].AsInt64,
        (RecordClass)d["c"].AsInt32,
        d["b"].AsString,
        d["s"].AsInt64,
        DateTimeOffset.FromUnixTimeMilliseconds(d["t"].AsInt64),
        d["p"].AsBinary);

    public void Dispose() => _db.Dispose();
}
