using System.Security.Cryptography;
using System.Text;
using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Security;

/// <summary>
/// The dashboard's sign-in: an API token is exchanged (<c>POST /api/session</c>) for a random session id in an
/// HttpOnly, SameSite=Strict cookie (Secure over HTTPS). The store keeps only the id's SHA-256, the token's hash and a
/// CSRF token (<see cref="DashboardSession"/>), so sessions work on every replica of a shared store, and the token's
/// role, expiry and revocation apply to its sessions on every request. A request that changes something (POST, PUT,
/// PATCH, DELETE) and is signed in by the cookie must carry the session's CSRF token in <see cref="CsrfHeader"/>.
/// </summary>
public static class DashboardSessions
{
    public const string CookieName = "edgeml_session";
    public const string CsrfHeader = "X-CSRF-Token";

    /// <summary>How long a session lasts (never longer than its token).</summary>
    public static readonly TimeSpan Lifetime = TimeSpan.FromHours(12);

    /// <summary>Signs in with an API token: the new session's cookie value and record; null when the token is not active.</summary>
    public static (string Cookie, DashboardSession Session, string Role)? SignIn(IHubStore store, string token, DateTimeOffset now)
    {
        var tokenHash = Secrets.Hash(token);
        if (store.ApiTokenRole(tokenHash, now) is not { } role) return null;
        var cookie = Secrets.New("ses_");
        var session = new DashboardSession(Secrets.Hash(cookie), tokenHash, Secrets.New(""), now, now + Lifetime);
        store.AddSession(session, now);
        return (cookie, session, role);
    }

    /// <summary>The session of the request's cookie while it and its token are active: (session, role); else null.</summary>
    public static (DashboardSession Session, string Role)? Find(HttpContext http, IHubStore store, DateTimeOffset now)
    {
        if (!http.Request.Cookies.TryGetValue(CookieName, out var cookie) || cookie is not { Length: > 0 and < 200 }) return null;
        if (store.FindSession(Secrets.Hash(cookie), now) is not { } session) return null;
        return store.ApiTokenRole(session.TokenHash, now) is { } role ? (session, role) : null;
    }

    /// <summary>Whether a request by cookie carries the session's CSRF token (always true for GET, HEAD, OPTIONS).</summary>
    public static bool CsrfHolds(HttpRequest request, DashboardSession session)
    {
        if (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method) || HttpMethods.IsOptions(request.Method)) return true;
        var sent = request.Headers[CsrfHeader].ToString();
        return sent.Length > 0 && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(sent), Encoding.UTF8.GetBytes(session.Csrf));
    }

    /// <summary>The cookie's options: HttpOnly, SameSite=Strict, Path=/, Secure when the request came over HTTPS.</summary>
    public static CookieOptions CookieOptions(HttpRequest request, DateTimeOffset? expires) => new()
    {
        HttpOnly = true, SameSite = SameSiteMode.Strict, Secure = request.IsHttps, Path = "/", Expires = expires, IsEssential = true,
    };
}
