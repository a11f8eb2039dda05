using EdgeMl.Protocol.Health;
using EdgeMl.Protocol.Wire;
using EdgeMl.Agent.Platform;
using LiteDB;
using Microsoft.Extensions.Logging;

namespace EdgeMl.Agent.Outbox;

/// <summary>
/// Store-and-forward on the device: every telemetry record, health report and event is written to one
/// LiteDB file (BsonDocument API only: LiteDB's mapper is not AOT-safe) with its (bootId, seq) before it
/// is sent, and leaves only when the broker has acknowledged it. Records are handed out most important
/// class first, oldest first. A byte budget bounds the file: when a record does not fit, older records of
/// the least important class (never a more important one than the new record) are dropped, and the drops
/// are counted per class in the same write, so the counts survive a crash and can be reported later.
/// <para>
/// The store itself may fail: when the file system is full (or a write fails otherwise) the record is dropped and
/// counted per class with the reason (<see cref="OutboxHealth.DroppedDiskFull"/>), <see cref="StoreError"/> says
/// why, and the file is closed; the next write at least <see cref="ReopenAfter"/> later opens it again (LiteDB does
/// not recover from a failed write on the same instance), so storing resumes by itself when space comes back.
/// A file that is not a readable outbox (truncated, flipped bytes) is moved aside to
/// <c>agent.db.corrupt-TIME</c> and a fresh one started (<see cref="MovedAside"/>); read-only (for
/// <c>status</c>) it is reported as <see cref="InvalidDataException"/> naming the file.
/// </para>
/// </summary>
public sealed partial class DeviceOutbox : IDisposable
{
    private const string RecordsName = "outbox";
    private const string MetaName = "meta";
    private const int CheckpointPages = 64;
    private static readonly RecordClass[] Classes = Enum.GetValues<RecordClass>();

    private readonly string _path;
    private readonly ILogger _logger;
    private readonly bool _readOnly;
    private LiteDatabase? _db;
    private ILiteCollection<BsonDocument> _records = null!;
    private ILiteCollection<BsonDocument> _meta = null!;
    private readonly OutboxSettings _settings;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private readonly long[] _depth = new long[Classes.Length];
    private readonly long[] _dropped = new long[Classes.Length];
    private readonly long[] _expired = new long[Classes.Length];
    private readonly long[] _diskFull = new long[Classes.Length];
    private readonly long[] _tooLarge = new long[Classes.Length];
    private (Stream Data, Stream Log)? _files;
    private long _reopenAt;
    private bool _disposed;
    private bool _full;
    private long _bytes;
    private long _nextId;
    private long _nextSeq;

    /// <param name="logger">Told when the store stops and starts writing again (a full disk), once each way.</param>
    public DeviceOutbox(string path, OutboxSettings settings, TimeProvider? time = null, bool readOnly = false, ILogger? logger = null)
    {
        _logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        _settings = settings;
        _time = time ?? TimeProvider.System;
        _path = path;
        _readOnly = readOnly;
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null && !readOnly) Directory.CreateDirectory(dir);

        // A new boot: records of earlier boots keep their identity; this boot numbers from 1.
        BootId = Guid.NewGuid().ToString("N")[..16];
        try
        {
            Open();
        }
        catch (Exception e) when (readOnly && IsUnreadable(e))
        {
            throw new InvalidDataException($"outbox '{path}' is not readable: {OneLine(e)}", e);
        }
        catch (Exception e) when (DiskSpace.IsFull(e))
        {
            // Starts without a store; the next write tries again (predictions go on meanwhile).
            Broke(e);
        }
        catch (Exception e) when (IsUnreadable(e))
        {
            MovedAside = MoveAside(path, OneLine(e));
            Open();
        }
    }

    /// <summary>Opens the file and loads depth, size and counters from it.</summary>
    /// <remarks>
    /// The outbox opens the data file and LiteDB's log itself and hands LiteDB the streams: after a failed write
    /// LiteDB 5.0.21 keeps its engine (and, through it, its own file handles) referenced from the failing thread's
    /// transaction slot, so files it opened itself would stay open and locked; these are closed here whatever LiteDB
    /// does. A reader (<c>status</c>) shares the files with the running agent and never writes or deletes them.
    /// </remarks>
    private void Open()
    {
        Stream? data = null, log = null;
        LiteDatabase db;
        try
        {
            data = OpenFile(_path);
            log = _readOnly && !File.Exists(LogFile(_path)) ? new MemoryStream() : OpenFile(LogFile(_path));
            db = new LiteDatabase(new LiteDB.Engine.LiteEngine(new LiteDB.Engine.EngineSettings { DataStream = data, LogStream = log, ReadOnly = _readOnly }));
        }
        catch
        {
            data?.Dispose();
            log?.Dispose();
            throw;
        }

        try
        {
            _records = db.GetCollection(RecordsName, BsonAutoId.Int64);
            _meta = db.GetCollection(MetaName);
            if (!_readOnly)
            {
                // LiteDB keeps every page written since the last checkpoint in memory (its log); the default
                // (1,000 pages of 8 kB) let a device's RSS creep up by ~25 MB. A short log keeps it flat.
                db.Pragma("CHECKPOINT", CheckpointPages);
                // What each operation finds through: the key (class, id) orders Peek and MakeRoom, the wall-clock time
                // orders Expire and the oldest record of Stats. No operation scans the whole collection.
                _records.EnsureIndex("k", "$.k");
                _records.EnsureIndex("t", "$.t");
            }

            Array.Clear(_depth);
            _bytes = 0;
            if (_meta.FindById("counters") is { } meta)
            {
                foreach (var c in Classes)
                {
                    // The counters this process kept while the store was away add to what the file says.
                    _dropped[(int)c] = Math.Max(_dropped[(int)c], Counter(meta, "dropped", c));
                    _expired[(int)c] = Math.Max(_expired[(int)c], Counter(meta, "expired", c));
                    _diskFull[(int)c] = Math.Max(_diskFull[(int)c], Counter(meta, "diskFull", c));
                    _tooLarge[(int)c] = Math.Max(_tooLarge[(int)c], Counter(meta, "tooLarge", c));
                }
            }

            foreach (var doc in _records.FindAll())
            {
                _depth[doc["c"].AsInt32]++;
                _bytes += doc["n"].AsInt32;
                _nextId = Math.Max(_nextId, doc["_id"].AsInt64); // ids only order records on this device
            }
        }
        catch
        {
            Close(db, data, log);
            throw;
        }

        _db = db;
        _files = (data, log);
    }

    private Stream OpenFile(string path) => _readOnly
        ? new ReadOnlyPageStream(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 8192, FileOptions.RandomAccess))
        : new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, 8192, FileOptions.RandomAccess);

    /// <summary>Closes LiteDB, then the files, whatever LiteDB managed.</summary>
    private static void Close(LiteDatabase? db, Stream? data, Stream? log)
    {
        foreach (var close in new Action?[] { db is null ? null : db.Dispose, data is null ? null : data.Dispose, log is null ? null : log.Dispose })
        {
            try
            {
                close?.Invoke();
            }
            catch (Exception)
            {
                // A full disk: what was not flushed was not committed either (LiteDB's log is written before it counts).
            }
        }
    }

    private static long Counter(BsonDocument meta, string name, RecordClass c) =>
        meta[name] is { IsDocument: true } d && d.AsDocument[c.ToString()] is { IsNumber: true } v ? v.AsInt64 : 0;

    /// <summary>How long after a failed write the store is opened again (by the next write).</summary>
    public static readonly TimeSpan ReopenAfter = TimeSpan.FromSeconds(5);

    /// <summary>Why the store cannot write now (one line), or null while it works.</summary>
    public string? StoreError { get; private set; }

    /// <summary>True while writes fail because the data directory's file system is full.</summary>
    public bool DiskFull
    {
        get { lock (_gate) return _full; }
    }

    /// <summary>Where an unreadable outbox file was moved at start (with why), or null.</summary>
    public string? MovedAside { get; }

    /// <summary>The store is open, or was opened again now; false while it stays away (the caller counts the drop).</summary>
    private bool Available()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_db is not null) return true;
        if (_time.GetTimestamp() < _reopenAt) return false;
        if (_full && DiskSpace.FreeBytes(Path.GetDirectoryName(Path.GetFullPath(_path))!) < ReopenFreeBytes)
        {
            // Still full: not even an attempt (each failed one costs LiteDB an engine it cannot let go of).
            _reopenAt = _time.GetTimestamp() + (long)(ReopenAfter.TotalSeconds * _time.TimestampFrequency);
            return false;
        }

        try
        {
            Open();
            StoreError = null;
            _full = false;
            LogStoreResumed(_logger, _path);
            // What was dropped while the store was away is on disk from now on.
            return Write(() => _meta.Upsert(Counters()));
        }
        catch (Exception e) when (e is IOException or LiteException or UnauthorizedAccessException)
        {
            Broke(e);
            return false;
        }
    }

    /// <summary>Free space the data directory needs before a full store is opened again: room for a checkpoint (64 pages of 8 kB) twice.</summary>
    private const long ReopenFreeBytes = 2 * CheckpointPages * 8192;

    /// <summary>A write failed: close the store (LiteDB stays unusable after a failed write) and try again later.</summary>
    private void Broke(Exception e)
    {
        _full = DiskSpace.IsFull(e);
        var first = StoreError is null;
        StoreError = _full ? $"data directory is full: {OneLine(e)}" : $"outbox '{_path}' cannot be written: {OneLine(e)}";
        if (first) LogStoreFailed(_logger, StoreError);
        _reopenAt = _time.GetTimestamp() + (long)(ReopenAfter.TotalSeconds * _time.TimestampFrequency);
        Close(_db, _files?.Data, _files?.Log);
        _db = null;
        _files = null;
        _records = null!;
        _meta = null!;
    }

    /// <summary>Runs a write transaction; on a store failure it rolls back, closes the store and returns false.</summary>
    private bool Write(Action body)
    {
        if (!Available()) return false;
        var db = _db!;
        try
        {
            db.BeginTrans();
            body();
            db.Commit();
            return true;
        }
        catch (Exception e) when (e is IOException or LiteException or UnauthorizedAccessException)
        {
            try
            {
                db.Rollback();
            }
            catch (Exception)
            {
                // The store is reopened from disk; what the file holds is the truth then.
            }

            Broke(e);
            return false;
        }
    }

    private static bool IsUnreadable(Exception e) =>
        e is LiteException or InvalidCastException or IndexOutOfRangeException or ArgumentException or FormatException
            or NotSupportedException or InvalidDataException or OverflowException or NullReferenceException
        || (e is IOException && !DiskSpace.IsFull(e) && e is not FileNotFoundException and not DirectoryNotFoundException);

    /// <summary>Moves an unreadable outbox (and its LiteDB log) aside; returns the new name with the reason.</summary>
    private string MoveAside(string path, string why)
    {
        var stamp = _time.GetUtcNow().ToString("yyyyMMdd'T'HHmmss'Z'", System.Globalization.CultureInfo.InvariantCulture);
        var aside = $"{path}.corrupt-{stamp}";
        File.Move(path, aside, overwrite: true);
        var log = LogFile(path);
        if (File.Exists(log)) File.Move(log, LogFile(aside), overwrite: true);
        return $"{aside} ({why})";
    }

    /// <summary>LiteDB's write-ahead log beside the data file: <c>agent-log.db</c> for <c>agent.db</c>.</summary>
    private static string LogFile(string path) =>
        Path.Combine(Path.GetDirectoryName(path) ?? "", Path.GetFileNameWithoutExtension(path) + "-log" + Path.GetExtension(path));

    private static string OneLine(Exception e) => e.Message.ReplaceLineEndings(" ").Trim();

    [LoggerMessage(EventId = 1700, Level = LogLevel.Error, Message = "The outbox cannot store records; they are dropped and counted until it can: {Error}")]
    private static partial void LogStoreFailed(ILogger logger, string error);

    [LoggerMessage(EventId = 1701, Level = LogLevel.Information, Message = "The outbox {Path} stores records again")]
    private static partial void LogStoreResumed(ILogger logger, string path);

    /// <summary>This process's boot id: with the sequence number it identifies a record for de-duplication.</summary>
    public string BootId { get; }

    /// <summary>
    /// Stores one record durably and returns its sequence number, or 0 when it was dropped: for lack of room under
    /// the budget, or because the store cannot write (full disk: counted as <c>disk-full</c>, see <see cref="StoreError"/>).
    /// </summary>
    public long Append(RecordClass recordClass, byte[] payload)
    {
        lock (_gate)
        {
            // One transaction: evictions, the record and the counters land together or not at all; the counters in
            // memory change only after the commit.
            var c = (int)recordClass;
            long[]? dropped = null;
            var victims = new List<BsonDocument>();
            var stored = Write(() =>
            {
                if (!MakeRoom(recordClass, payload.Length, victims))
                {
                    victims.Clear();
                    dropped = new long[Classes.Length];
                    dropped[c] = 1;
                    _meta.Upsert(Counters(dropped: dropped));
                    return;
                }

                var id = _nextId + 1;
                _records.Insert(new BsonDocument
                {
                    ["_id"] = id,
                    ["k"] = Key(recordClass, id),
                    ["c"] = c,
                    ["b"] = BootId,
                    ["s"] = _nextSeq + 1,
                    ["t"] = _time.GetUtcNow().ToUnixTimeMilliseconds(),
                    ["m"] = MonotonicMs(), // age on this run's monotonic clock: wall-clock jumps do not age it
                    ["n"] = payload.Length,
                    ["p"] = payload,
                });
                if (victims.Count > 0)
                {
                    dropped = Tally(victims);
                    _meta.Upsert(Counters(dropped: dropped));
                }
            });
            if (!stored)
            {
                _dropped[c]++;
                _diskFull[c]++;
                return 0;
            }

            Forgot(victims, dropped, _dropped);
            if (victims.Count == 0 && dropped is not null) return 0; // no room under the budget
            _nextId++;
            _depth[c]++;
            _bytes += payload.Length;
            return ++_nextSeq;
        }
    }

    /// <summary>Up to <paramref name="max"/> waiting records, most important class first, oldest first.</summary>
    public List<StoredRecord> Peek(int max)
    {
        lock (_gate)
        {
            if (!Available()) return [];
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
            if (!Available()) return result;
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

    /// <summary>Removes records the broker acknowledged (when the store cannot write now, they are sent again later).</summary>
    public void Acknowledge(IEnumerable<long> ids)
    {
        lock (_gate)
        {
            var gone = new List<BsonDocument>();
            if (!Write(() =>
                {
                    foreach (var id in ids)
                    {
                        if (_records.FindById(id) is { } doc && _records.Delete(doc["_id"])) gone.Add(doc);
                    }
                }))
            {
                return;
            }

            Forgot(gone, null, null);
        }
    }

    /// <summary>
    /// Drops a record that can never be delivered (larger than the broker's maximum packet size), counted per class as
    /// dropped, reason too-large (<see cref="OutboxHealth.DroppedTooLarge"/>).
    /// </summary>
    public void Reject(long id)
    {
        lock (_gate)
        {
            var gone = new List<BsonDocument>();
            long[]? counts = null;
            if (!Write(() =>
                {
                    if (_records.FindById(id) is not { } doc || !_records.Delete(doc["_id"])) return;
                    gone.Add(doc);
                    counts = Tally(gone);
                    _meta.Upsert(Counters(dropped: counts, tooLarge: counts));
                }))
            {
                return;
            }

            Forgot(gone, counts, _dropped);
            if (counts is not null) for (var c = 0; c < counts.Length; c++) _tooLarge[c] += counts[c];
        }
    }

    /// <summary>
    /// Drops records older than the TTL, counting them per class. Returns how many went. A record stored by this
    /// process is aged on the monotonic clock, not the wall clock: a device without a real-time clock that booted in
    /// the past and is then set forward by days (NTP) does not lose its whole backlog to one jump. Records of earlier
    /// runs have only their wall-clock time.
    /// </summary>
    public int Expire()
    {
        if (_settings.TtlHours <= 0) return 0;
        lock (_gate)
        {
            if (!Available()) return 0;
            var ttlMs = _settings.TtlHours * 3_600_000L;
            var cutoff = _time.GetUtcNow().ToUnixTimeMilliseconds() - ttlMs;
            var now = MonotonicMs();
            var old = _records.Find(Query.LT("t", cutoff))
                .Where(d => d["b"].AsString != BootId || !d["m"].IsNumber || now - d["m"].AsInt64 > ttlMs)
                .ToList();
            if (old.Count == 0) return 0;
            var expired = Tally(old);
            if (!Write(() =>
                {
                    foreach (var doc in old) _records.Delete(doc["_id"]);
                    _meta.Upsert(Counters(expired: expired));
                }))
            {
                return 0;
            }

            Forgot(old, expired, _expired);
            return old.Count;
        }
    }

    public OutboxHealth Health()
    {
        var s = Stats();
        var health = new OutboxHealth
        {
            Depth = s.Depth.ToDictionary(kv => Name(kv.Key), kv => kv.Value),
            Bytes = s.Bytes,
            MaxBytes = s.MaxBytes,
            Dropped = s.Dropped.ToDictionary(kv => Name(kv.Key), kv => kv.Value),
            Expired = s.Expired.ToDictionary(kv => Name(kv.Key), kv => kv.Value),
            Oldest = s.Oldest,
        };
        lock (_gate)
        {
            health.DroppedDiskFull = Classes.Where(c => _diskFull[(int)c] > 0).ToDictionary(Name, c => _diskFull[(int)c]);
            health.DroppedTooLarge = Classes.Where(c => _tooLarge[(int)c] > 0).ToDictionary(Name, c => _tooLarge[(int)c]);
            health.DiskFull = _full;
            health.StoreError = StoreError;
            health.FileBytes = DiskBytes();
        }

        return health;
    }

    public static string Name(RecordClass c) => c.ToString().ToLowerInvariant();

    public OutboxStats Stats()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var oldest = _db is null ? null : _records.Find(Query.All("t", Query.Ascending), 0, 1).FirstOrDefault();
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
    /// Frees room for a record of <paramref name="size"/> bytes by deleting (inside the caller's transaction) the oldest
    /// records of the least important classes that are no more important than <paramref name="incoming"/>; they are
    /// added to <paramref name="victims"/>. False (nothing deleted) if that is not enough.
    /// </summary>
    private bool MakeRoom(RecordClass incoming, int size, List<BsonDocument> victims)
    {
        var excess = _bytes + size - _settings.MaxBytes;
        if (excess <= 0) return true;
        if (size > _settings.MaxBytes) return false;

        // Enough droppable bytes? Only then drop anything. The key index hands each class out oldest first.
        long droppable = 0;
        for (var c = Classes.Length - 1; c >= (int)incoming && droppable < excess; c--)
        {
            if (_depth[c] == 0) continue;
            foreach (var doc in _records.Find(Query.Between("k", Key((RecordClass)c, 0), Key((RecordClass)c, MaxId))))
            {
                victims.Add(doc);
                droppable += doc["n"].AsInt32;
                if (droppable >= excess) break;
            }
        }

        if (droppable < excess)
        {
            victims.Clear();
            return false;
        }

        foreach (var doc in victims)
        {
            _records.Delete(doc["_id"]);
        }

        return true;
    }

    /// <summary>Bytes the outbox's files take on disk now: the data file and LiteDB's log beside it.</summary>
    public long FileBytes
    {
        get { lock (_gate) return DiskBytes(); }
    }

    private long DiskBytes() => Length(_path) + Length(LogFile(_path));

    private static long Length(string path)
    {
        try
        {
            return new FileInfo(path).Exists ? new FileInfo(path).Length : 0;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>The file is rewritten only when it is at least this large (bytes)…</summary>
    internal const long ShrinkMinFileBytes = 4L * 1024 * 1024;

    /// <summary>…and what waits in it is at most this much (bytes of payload), so that a shrink is short…</summary>
    internal const long ShrinkMaxLiveBytes = 8L * 1024 * 1024;

    /// <summary>…and at most a quarter of the file.</summary>
    private const int ShrinkRatio = 4;

    /// <summary>At most one shrink per this period (monotonic), whatever the file does.</summary>
    public TimeSpan ShrinkEvery { get; init; } = TimeSpan.FromMinutes(10);

    private long _shrunkAt = long.MinValue;

    /// <summary>
    /// Gives disk space back when the outbox is mostly empty: LiteDB never shortens its file, so a backlog of 200 MB
    /// that was delivered would otherwise keep 200 MB of a small card forever. When the file is at least
    /// <see cref="ShrinkMinFileBytes"/>, what waits is at most a quarter of it (and at most <see cref="ShrinkMaxLiveBytes"/>),
    /// and the last shrink was at least <see cref="ShrinkEvery"/> ago, the waiting records and the counters are copied
    /// into a fresh file (<c>agent-shrink.db</c>) that then replaces <c>agent.db</c> by an atomic rename; a power loss at
    /// any moment leaves either the old file or the new one, both complete. Called from the agent's health loop.
    /// Returns the bytes given back (0 when nothing was done; a failure leaves the old file in use and is logged).
    /// </summary>
    public long Shrink()
    {
        lock (_gate)
        {
            if (_readOnly || _disposed || _db is null) return 0;
            var now = _time.GetTimestamp();
            if (_shrunkAt != long.MinValue && (now - _shrunkAt) < ShrinkEvery.TotalSeconds * _time.TimestampFrequency) return 0;
            var before = DiskBytes();
            if (before < ShrinkMinFileBytes || _bytes > ShrinkMaxLiveBytes || _bytes * ShrinkRatio > before) return 0;
            _shrunkAt = now;

            var fresh = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(_path))!, Path.GetFileNameWithoutExtension(_path) + "-shrink" + Path.GetExtension(_path));
            try
            {
                var db = _db;
                var content = db.GetCollectionNames().ToDictionary(name => name, name => db.GetCollection(name).FindAll().ToList());
                Close(_db, _files?.Data, _files?.Log);
                _db = null;
                _files = null;
                // The old store closed with a checkpoint: everything is in agent.db and its log is empty. A log that is
                // not would be replayed onto the new file after the rename, so then the shrink is not done.
                if (Length(LogFile(_path)) != 0) throw new IOException($"the log {LogFile(_path)} is not empty after closing");
                DeleteFiles(fresh);
                WriteCopy(fresh, content);
                File.Delete(LogFile(_path));
                File.Move(fresh, _path, overwrite: true);
            }
            catch (Exception e) when (e is IOException or LiteException or UnauthorizedAccessException)
            {
                LogShrinkFailed(_logger, _path, OneLine(e));
                try
                {
                    DeleteFiles(fresh);
                }
                catch (IOException)
                {
                }
            }

            try
            {
                if (_db is null) Open();
            }
            catch (Exception e) when (e is IOException or LiteException or UnauthorizedAccessException)
            {
                Broke(e);
                return 0;
            }

            var after = DiskBytes();
            if (after < before) LogShrunk(_logger, _path, before, after);
            return Math.Max(0, before - after);
        }
    }

    /// <summary>Writes <paramref name="content"/> (collection → documents, ids kept) into a new LiteDB file and flushes it to disk.</summary>
    private static void WriteCopy(string path, Dictionary<string, List<BsonDocument>> content)
    {
        using (var data = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 8192, FileOptions.RandomAccess))
        using (var log = new FileStream(LogFile(path), FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 8192, FileOptions.RandomAccess))
        {
            using (var db = new LiteDatabase(new LiteDB.Engine.LiteEngine(new LiteDB.Engine.EngineSettings { DataStream = data, LogStream = log })))
            {
                db.Pragma("CHECKPOINT", CheckpointPages);
                foreach (var (name, docs) in content)
                {
                    var col = db.GetCollection(name, BsonAutoId.Int64);
                    if (name == RecordsName)
                    {
                        col.EnsureIndex("k", "$.k");
                        col.EnsureIndex("t", "$.t");
                    }

                    if (docs.Count > 0) col.InsertBulk(docs);
                }

                db.Checkpoint();
            }

            data.Flush(flushToDisk: true);
            if (log.Length != 0) throw new IOException($"the log of {path} is not empty after closing");
        }

        File.Delete(LogFile(path));
    }

    private static void DeleteFiles(string path)
    {
        File.Delete(path);
        File.Delete(LogFile(path));
    }

    [LoggerMessage(EventId = 1702, Level = LogLevel.Information, Message = "The outbox {Path} was mostly empty and shrank from {Before} to {After} bytes")]
    private static partial void LogShrunk(ILogger logger, string path, long before, long after);

    [LoggerMessage(EventId = 1703, Level = LogLevel.Warning, Message = "The outbox {Path} could not shrink (it stays as it was): {Error}")]
    private static partial void LogShrinkFailed(ILogger logger, string path, string error);

    private long MonotonicMs() => (long)(_time.GetTimestamp() * 1000.0 / _time.TimestampFrequency);

    /// <summary>Per-class counts of <paramref name="docs"/>.</summary>
    private static long[] Tally(List<BsonDocument> docs)
    {
        var n = new long[Classes.Length];
        foreach (var doc in docs) n[doc["c"].AsInt32]++;
        return n;
    }

    /// <summary>After a commit: the deleted <paramref name="docs"/> leave depth and size, and <paramref name="counts"/> go into <paramref name="counter"/>.</summary>
    private void Forgot(List<BsonDocument> docs, long[]? counts, long[]? counter)
    {
        foreach (var doc in docs)
        {
            _depth[doc["c"].AsInt32]--;
            _bytes -= doc["n"].AsInt32;
        }

        if (counts is null || counter is null) return;
        for (var c = 0; c < counts.Length; c++) counter[c] += counts[c];
    }

    /// <summary>The persisted counters as they will be once the pending <paramref name="dropped"/> / <paramref name="expired"/> counts commit.</summary>
    private BsonDocument Counters(long[]? dropped = null, long[]? expired = null, long[]? tooLarge = null)
    {
        var d = new BsonDocument();
        var x = new BsonDocument();
        var full = new BsonDocument();
        var large = new BsonDocument();
        foreach (var c in Classes)
        {
            d[c.ToString()] = _dropped[(int)c] + (dropped?[(int)c] ?? 0);
            x[c.ToString()] = _expired[(int)c] + (expired?[(int)c] ?? 0);
            full[c.ToString()] = _diskFull[(int)c];
            large[c.ToString()] = _tooLarge[(int)c] + (tooLarge?[(int)c] ?? 0);
        }

        return new BsonDocument { ["_id"] = "counters", ["dropped"] = d, ["expired"] = x, ["diskFull"] = full, ["tooLarge"] = large };
    }

    private static long Key(RecordClass c, long id) => ((long)c << 56) | id;

    private static StoredRecord ToRecord(BsonDocument d) => new(
        d["_id"].AsInt64,
        (RecordClass)d["c"].AsInt32,
        d["b"].AsString,
        d["s"].AsInt64,
        DateTimeOffset.FromUnixTimeMilliseconds(d["t"].AsInt64),
        d["p"].AsBinary);

    public void Dispose()
    {
        lock (_gate)
        {
            // A full disk at shutdown: what was committed is in the file; the rest was counted as dropped.
            Close(_db, _files?.Data, _files?.Log);
            _db = null;
            _files = null;
            _disposed = true;
        }
    }
}
