namespace EdgeMl.FleetHub.Store;

/// <summary>Dashboard sessions as rows of <c>sessions</c> (migration 2): every replica sees every session.</summary>
public sealed partial class PostgresHubStore
{
    public void AddSession(DashboardSession session, DateTimeOffset now) => Run(c =>
    {
        using var t = c.BeginTransaction();
        Exec(c, t, "DELETE FROM sessions WHERE expires <= $1", now.ToUnixTimeMilliseconds());
        Exec(c, t, "INSERT INTO sessions (id_hash, token_hash, csrf, created, expires) VALUES ($1, $2, $3, $4, $5)",
            session.IdHash, session.TokenHash, session.Csrf, session.Created.ToUnixTimeMilliseconds(), session.Expires.ToUnixTimeMilliseconds());
        t.Commit();
    });

    public DashboardSession? FindSession(string idHash, DateTimeOffset now) => Run(c =>
    {
        using var q = Command(c, null, "SELECT token_hash, csrf, created, expires FROM sessions WHERE id_hash = $1 AND expires > $2", idHash, now.ToUnixTimeMilliseconds());
        using var r = q.ExecuteReader();
        return r.Read()
            ? new DashboardSession(idHash, r.GetString(0), r.GetString(1), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(2)), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(3)))
            : null;
    });

    public void RemoveSession(string idHash) => Run(c => Exec(c, null, "DELETE FROM sessions WHERE id_hash = $1", idHash));
}
