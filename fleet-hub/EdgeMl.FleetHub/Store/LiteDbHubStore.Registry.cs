using System.Text.Json;
using LiteDB;

namespace EdgeMl.FleetHub.Store;

/// <summary>
/// The device registry: enrollment (one-time token → device password), revocation, groups and tags,
/// and the latest health each device reported. Secrets are stored as SHA-256 only.
/// </summary>
public sealed partial class LiteDbHubStore
{
    /// <summary>
    /// Registers <paramref name="id"/> with a one-time enrollment token. A device already enrolled and not
    /// revoked is refused (revoke it first); a pending enrollment gets the new token instead of the old one.
    /// </summary>
    public void CreateEnrollment(string id, string? group, IReadOnlyDictionary<string, string> tags, string tokenHash, DateTimeOffset expires, DateTimeOffset now)
    {
        lock (_gate)
        {
            var d = Device(id);
            if (d.ContainsKey("secretHash") && !d["revoked"].AsBoolean)
            {
                throw new InvalidOperationException($"device '{id}' is already enrolled; revoke it first to enroll it again");
            }

            d.Remove("secretHash");
            d["revoked"] = false;
            d.Remove("revokedAt");
            d["group"] = group ?? (d.TryGetValue("group", out var g) ? g : BsonValue.Null);
            var tagDoc = new BsonDocument();
            foreach (var (k, v) in tags) tagDoc[k] = v;
            d["tags"] = tagDoc;
            d["createdAt"] = now.ToUnixTimeMilliseconds();
            d["tokenHash"] = tokenHash;
            d["tokenExpires"] = expires.ToUnixTimeMilliseconds();
            SaveDevice(d);
        }
    }

    /// <summary>Exchanges an enrollment token for the device's password (stored as a hash); null if the token is unknown, used or expired.</summary>
    public string? ClaimEnrollment(string tokenHash, string secretHash, DateTimeOffset now)
    {
        lock (_gate)
        {
            var d = _devices.FindOne(Query.EQ("tokenHash", tokenHash));
            if (d is null || d["tokenExpires"].AsInt64 < now.ToUnixTimeMilliseconds()) return null;
            d.Remove("tokenHash");
            d.Remove("tokenExpires");
            d["secretHash"] = secretHash;
            d["enrolledAt"] = now.ToUnixTimeMilliseconds();
            SaveDevice(d);
            return d["_id"].AsString;
        }
    }

    public DeviceAccess CheckDevice(string id, string password)
    {
        lock (_gate)
        {
            var d = _devices.FindById(id);
            // LiteDB compares ids ignoring case: 'REV-1' would find 'rev-1'. A device is only ever its exact id.
            if (d is null || d["_id"].AsString != id || !d.TryGetValue("secretHash", out var hash)) return DeviceAccess.Unknown;
            if (d["revoked"].AsBoolean) return DeviceAccess.Revoked;
            return Security.Secrets.Matches(password, hash.AsString) ? DeviceAccess.Allowed : DeviceAccess.BadPassword;
        }
    }

    /// <summary>Marks the device revoked (its password stops working); false when there is no such device.</summary>
    public bool Revoke(string id, DateTimeOffset now)
    {
        lock (_gate)
        {
            var d = _devices.FindById(id);
            if (d is null) return false;
            d["revoked"] = true;
            d["revokedAt"] = now.ToUnixTimeMilliseconds();
            d.Remove("tokenHash");
            d.Remove("tokenExpires");
            SaveDevice(d);
            return true;
        }
    }

    public void SetModelState(string id, string? desired, string? reportedJson)
    {
        lock (_gate)
        {
            var d = Device(id);
            if (desired is not null) d["desired"] = desired;
            if (reportedJson is not null) d["reported"] = reportedJson;
            SaveDevice(d);
        }
    }

    public void SetDriftStatus(string id, string status, DateTimeOffset at)
    {
        lock (_gate)
        {
            var d = Device(id);
            d["driftStatus"] = status;
            d["driftAt"] = at.ToUnixTimeMilliseconds();
            SaveDevice(d);
        }
    }

    public bool AddModel(ModelEntry m, ReadOnlyMemory<byte> package)
    {
        lock (_gate)
        {
            var id = $"{m.Name}@{m.Version}";
            if (_models.FindById(id) is not null) return false;
            var full = PackagePath(m);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            using (var f = new FileStream(full + ".tmp", FileMode.Create, FileAccess.Write))
            {
                f.Write(package.Span);
                f.Flush(flushToDisk: true);
            }

            File.Move(full + ".tmp", full, overwrite: true);
            _models.Insert(new BsonDocument
            {
                ["_id"] = id, ["name"] = m.Name, ["version"] = m.Version, ["sha256"] = m.PackageSha256, ["size"] = m.SizeBytes,
                ["modelSha256"] = m.ModelSha256, ["keyId"] = m.KeyId, ["pushedBy"] = m.PushedBy, ["pushedAt"] = m.PushedAt.ToUnixTimeMilliseconds(), ["file"] = m.File,
            });
            return true;
        }
    }

    public ModelEntry? FindModel(string name, string version)
    {
        lock (_gate) return _models.FindById($"{name}@{version}") is { } d ? Model(d) : null;
    }

    public Stream? OpenPackage(string name, string version)
    {
        ModelEntry? m;
        lock (_gate) m = _models.FindById($"{name}@{version}") is { } d ? Model(d) : null;
        return m is null ? null : new FileStream(PackagePath(m), FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.Asynchronous);
    }

    /// <summary>A package's file: <see cref="ModelEntry.File"/> under the data directory, as a full path.</summary>
    private string PackagePath(ModelEntry m) => Path.GetFullPath(Path.Combine(_directory, m.File));

    public List<ModelEntry> Models()
    {
        lock (_gate) return _models.FindAll().Select(Model).ToList();
    }

    private static ModelEntry Model(BsonDocument d) => new(
        d["name"].AsString, d["version"].AsString, d["sha256"].AsString, d["size"].AsInt64, d["modelSha256"].AsString, d["keyId"].AsString,
        d["pushedBy"].AsString, DateTimeOffset.FromUnixTimeMilliseconds(d["pushedAt"].AsInt64), d["file"].AsString);

    public string? ApiTokenName(string tokenHash)
    {
        lock (_gate) return _apiTokens.FindById(tokenHash)?["name"].AsString;
    }

    public void AddApiToken(string tokenHash, string role, string name, DateTimeOffset now, DateTimeOffset? expires = null)
    {
        lock (_gate)
        {
            var doc = new BsonDocument { ["_id"] = tokenHash, ["role"] = role, ["name"] = name, ["created"] = now.ToUnixTimeMilliseconds() };
            if (expires is { } e) doc["expires"] = e.ToUnixTimeMilliseconds();
            _apiTokens.Upsert(doc);
        }
    }

    /// <summary>The role of an API token, or null when the token is not known, revoked or expired.</summary>
    public string? ApiTokenRole(string tokenHash, DateTimeOffset now)
    {
        lock (_gate) return _apiTokens.FindById(tokenHash) is { } t && TokenState(t, now) == "active" ? t["role"].AsString : null;
    }

    public bool HasApiTokens(string role, DateTimeOffset now)
    {
        lock (_gate) return _apiTokens.Find(Query.EQ("role", role)).Any(t => TokenState(t, now) == "active");
    }

    public List<ApiTokenEntry> ApiTokens()
    {
        lock (_gate)
        {
            var now = DateTimeOffset.UtcNow;
            return _apiTokens.FindAll().Select(t => new ApiTokenEntry(t["name"].AsString, t["role"].AsString, DateTimeOffset.FromUnixTimeMilliseconds(t["created"].AsInt64),
                Time(t, "expires"), Time(t, "revokedAt"), TokenState(t, now))).OrderBy(t => t.Created).ToList();
        }
    }

    public List<string> RevokeApiTokens(string name, DateTimeOffset now)
    {
        lock (_gate)
        {
            var revoked = new List<string>();
            foreach (var t in _apiTokens.Find(Query.EQ("name", name)).ToList())
            {
                if (TokenState(t, now) != "active" || t["name"].AsString != name) continue;
                t["revokedAt"] = now.ToUnixTimeMilliseconds();
                _apiTokens.Update(t);
                revoked.Add(t["_id"].AsString);
            }

            return revoked;
        }
    }

    public void RemoveApiTokens(string name, string? except)
    {
        lock (_gate)
        {
            foreach (var id in _apiTokens.Find(Query.EQ("name", name)).Select(t => t["_id"].AsString).Where(h => h != except).ToList()) _apiTokens.Delete(id);
        }
    }

    private static string TokenState(BsonDocument t, DateTimeOffset now) =>
        t.ContainsKey("revokedAt") ? "revoked" : t.TryGetValue("expires", out var e) && e.IsInt64 && e.AsInt64 <= now.ToUnixTimeMilliseconds() ? "expired" : "active";

    private ILiteCollection<BsonDocument> QuarantineLog => _db.GetCollection("quarantine", BsonAutoId.Int64);

    /// <summary>At most this many quarantined batches are kept (the oldest go first): a device cannot fill the disk through it.</summary>
    private const int MaxQuarantined = 1000;

    public void Quarantine(QuarantinedBatch batch)
    {
        lock (_gate)
        {
            QuarantineLog.Insert(new BsonDocument
            {
                ["device"] = batch.Device, ["at"] = batch.At.ToUnixTimeMilliseconds(), ["reason"] = batch.Reason, ["n"] = batch.Records, ["records"] = batch.RecordsJson,
            });
            var over = QuarantineLog.Count() - MaxQuarantined;
            if (over > 0)
            {
                foreach (var old in QuarantineLog.Find(Query.All(), limit: over).Select(d => d["_id"]).ToList()) QuarantineLog.Delete(old);
            }
        }
    }

    public List<QuarantinedBatch> Quarantined(string? device, int limit)
    {
        lock (_gate)
        {
            var q = device is null ? QuarantineLog.Find(Query.All(Query.Descending), limit: limit) : QuarantineLog.Find(Query.EQ("device", device)).OrderByDescending(d => d["_id"].AsInt64).Take(limit);
            return q.Select(d => new QuarantinedBatch(d["_id"].AsInt64, d["device"].AsString, DateTimeOffset.FromUnixTimeMilliseconds(d["at"].AsInt64), d["reason"].AsString,
                d["n"].AsInt32, d["records"].AsString)).ToList();
        }
    }

    private static DeviceEntry Entry(BsonDocument d)
    {
        var enrollment = d["revoked"].AsBoolean ? "revoked"
            : d.ContainsKey("secretHash") ? "enrolled"
            : d.ContainsKey("tokenHash") ? "pending"
            : "unregistered";
        var tags = d.TryGetValue("tags", out var t) && t.IsDocument ? t.AsDocument.ToDictionary(kv => kv.Key, kv => kv.Value.AsString) : [];
        return new DeviceEntry(
            d["_id"].AsString, Text(d, "group"), tags, enrollment, Time(d, "enrolledAt"), Time(d, "revokedAt"),
            d["presence"].AsString, Text(d, "boot"), Time(d, "lastSeen"), d["records"].AsInt64,
            Text(d, "model"), Text(d, "modelVersion"), d.TryGetValue("latencyP99Ms", out var p99) && p99.IsDouble ? p99.AsDouble : null,
            Time(d, "healthAt"), Text(d, "health"), Text(d, "driftStatus"), Time(d, "driftAt"), Text(d, "desired"), Text(d, "reported"));
    }

    private static DateTimeOffset? Time(BsonDocument d, string key) =>
        d.TryGetValue(key, out var v) && v.IsInt64 && v.AsInt64 > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(v.AsInt64) : null;

    private static string? Text(BsonDocument d, string key) => d.TryGetValue(key, out var v) && v.IsString ? v.AsString : null;

    /// <summary>Keeps the newest health report on the device document, with the model it names and its digest (<see cref="HealthDigest"/>), for the registry.</summary>
    private static void NoteHealth(BsonDocument d, long at, string json)
    {
        if (d.TryGetValue("healthAt", out var prev) && prev.AsInt64 > at) return;
        d["healthAt"] = at;
        d["health"] = json;
        if (HealthDigest.Of(json, Long(d, "outboxDropped"), Long(d, "inferenceErrors")) is { } digest)
        {
            d["cpuPercent"] = digest.CpuPercent is { } cpu ? cpu : BsonValue.Null;
            d["memoryPercent"] = digest.MemoryPercent is { } mem ? mem : BsonValue.Null;
            d["temperatureC"] = digest.TemperatureC is { } temp ? temp : BsonValue.Null;
            d["outboxDepth"] = digest.OutboxDepth is { } depth ? depth : BsonValue.Null;
            d["outboxDropped"] = digest.OutboxDropped is { } dropped ? dropped : BsonValue.Null;
            d["inferenceErrors"] = digest.InferenceErrors is { } ie ? ie : BsonValue.Null;
            d["healthy"] = digest.Healthy;
            d["problems"] = digest.Problems;
        }

        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.TryGetProperty("model", out var m) && m.ValueKind == JsonValueKind.Object)
            {
                d["model"] = m.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null;
                d["modelVersion"] = m.TryGetProperty("version", out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
                d["latencyP99Ms"] = m.TryGetProperty("latencyP99Ms", out var p99) && p99.TryGetDouble(out var ms) ? ms : BsonValue.Null;
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // Stored as it came; the registry just has no model for it.
        }
    }

    private static long? Long(BsonDocument d, string key) => d.TryGetValue(key, out var v) && v.IsNumber ? v.AsInt64 : null;
}
