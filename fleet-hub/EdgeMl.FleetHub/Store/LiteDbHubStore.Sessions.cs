using LiteDB;

namespace EdgeMl.FleetHub.Store;

/// <summary>Dashboard sessions as documents of the <c>sessions</c> collection, keyed by the cookie's hash.</summary>
public sealed partial class LiteDbHubStore
{
    private ILiteCollection<BsonDocument> Sessions => _db.GetCollection("sessions");

    public void AddSession(DashboardSession session, DateTimeOffset now)
    {
        lock (_gate)
        {
            Sessions.DeleteMany(Query.LTE("expires", now.ToUnixTimeMilliseconds()));
            Sessions.Upsert(new BsonDocument
            {
                ["_id"] = session.IdHash, ["token"] = session.TokenHash, ["csrf"] = session.Csrf,
                ["created"] = session.Created.ToUnixTimeMilliseconds(), ["expires"] = session.Expires.ToUnixTimeMilliseconds(),
            });
        }
    }

    public DashboardSession? FindSession(string idHash, DateTimeOffset now)
    {
        lock (_gate)
        {
            var d = Sessions.FindById(idHash);
            if (d is null || d["expires"].AsInt64 <= now.ToUnixTimeMilliseconds()) return null;
            return new DashboardSession(idHash, d["token"].AsString, d["csrf"].AsString,
                DateTimeOffset.FromUnixTimeMilliseconds(d["created"].AsInt64), DateTimeOffset.FromUnixTimeMilliseconds(d["expires"].AsInt64));
        }
    }

    public void RemoveSession(string idHash)
    {
        lock (_gate) Sessions.Delete(idHash);
    }
}
