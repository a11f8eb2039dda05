using LiteDB;

namespace EdgeMl.FleetHub.Store;

public sealed partial class LiteDbHubStore
{
    private ILiteCollection<BsonDocument> Rollouts => _db.GetCollection("rollouts");
    private ILiteCollection<BsonDocument> AuditLog => _db.GetCollection("audit", BsonAutoId.Int64);

    public void SaveRollout(string id, string state, string json)
    {
        lock (_gate) Rollouts.Upsert(new BsonDocument { ["_id"] = id, ["state"] = state, ["json"] = json });
    }

    public string? FindRollout(string id)
    {
        lock (_gate) return Rollouts.FindById(id) is { } d ? d["json"].AsString : null;
    }

    public List<string> RolloutJsons()
    {
        lock (_gate) return Rollouts.FindAll().Select(d => d["json"].AsString).ToList();
    }

    public void SetDesired(string id, string label, string json)
    {
        lock (_gate)
        {
            var d = Device(id);
            d["desired"] = label;
            d["desiredJson"] = json;
            SaveDevice(d);
        }
    }

    public List<(string Device, string Json)> DesiredStates()
    {
        lock (_gate)
        {
            return _devices.Find(Query.Not("desiredJson", BsonValue.Null)).Where(d => d.TryGetValue("desiredJson", out var v) && v.IsString)
                .Select(d => (d["_id"].AsString, d["desiredJson"].AsString)).ToList();
        }
    }

    public void AddAudit(AuditEntry entry)
    {
        lock (_gate)
        {
            AuditLog.Insert(new BsonDocument
            {
                ["at"] = entry.At.ToUnixTimeMilliseconds(), ["actor"] = entry.Actor, ["action"] = entry.Action,
                ["subject"] = entry.Subject, ["details"] = entry.Details, ["device"] = entry.Device ?? "",
            });
        }
    }

    public List<AuditEntry> Audit(AuditQuery q)
    {
        lock (_gate)
        {
            var since = q.Since?.ToUnixTimeMilliseconds() ?? 0;
            return AuditLog.Find(Query.GTE("at", since))
                .Select(d => new AuditEntry(DateTimeOffset.FromUnixTimeMilliseconds(d["at"].AsInt64), d["actor"].AsString, d["action"].AsString,
                    d["subject"].AsString, d["details"].AsString, d["device"].AsString is { Length: > 0 } dev ? dev : null))
                .Where(e => q.Action is null || e.Action == q.Action || e.Action.StartsWith(q.Action + ".", StringComparison.Ordinal))
                .Where(e => q.Device is null || e.Device == q.Device)
                .Where(e => q.Subject is null || e.Subject.Contains(q.Subject, StringComparison.Ordinal))
                .OrderBy(e => e.At).ToList();
        }
    }
}
