using EdgeMl.FleetHub.Security;
using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Apis;

/// <summary>
/// The dashboard's sign-in (<see cref="DashboardSessions"/>): <c>POST /api/session {"token"}</c> sets the session
/// cookie and answers <c>{name, role, csrf}</c>; <c>GET /api/session</c> tells who is signed in (401 when nobody);
/// <c>DELETE /api/session</c> signs out (with the CSRF header, as every changing request by cookie).
/// </summary>
public static class SessionApi
{
    public static void MapSessionApi(this WebApplication app)
    {
        app.MapPost("/api/session", IResult (SessionRequest request, HttpContext http, IHubStore store, TimeProvider time) =>
        {
            var token = request.Token?.Trim() ?? "";
            if (token.Length == 0) return TypedResults.BadRequest(new ApiError("paste an API token (edgeml tokens create --role viewer)"));
            var now = time.GetUtcNow();
            if (token.Length > 200 || DashboardSessions.SignIn(store, token, now) is not { } signedIn)
            {
                return Results.Json(new ApiError("this API token is not known, revoked or expired: ask an operator for one (edgeml tokens create --role viewer)"),
                    statusCode: StatusCodes.Status401Unauthorized);
            }

            http.Response.Cookies.Append(DashboardSessions.CookieName, signedIn.Cookie, DashboardSessions.CookieOptions(http.Request, signedIn.Session.Expires));
            return TypedResults.Ok(new SessionInfo(store.ApiTokenName(signedIn.Session.TokenHash) ?? "", signedIn.Role, signedIn.Session.Csrf, signedIn.Session.Expires));
        });
        app.MapGet("/api/session", IResult (HttpContext http, IHubStore store, TimeProvider time) =>
            DashboardSessions.Find(http, store, time.GetUtcNow()) is { } s
                ? TypedResults.Ok(new SessionInfo(store.ApiTokenName(s.Session.TokenHash) ?? "", s.Role, s.Session.Csrf, s.Session.Expires))
                : Results.Json(new ApiError("not signed in"), statusCode: StatusCodes.Status401Unauthorized));
        app.MapDelete("/api/session", IResult (HttpContext http, IHubStore store, TimeProvider time) =>
        {
            if (DashboardSessions.Find(http, store, time.GetUtcNow()) is { } s)
            {
                if (!DashboardSessions.CsrfHolds(http.Request, s.Session))
                {
                    return Results.Json(new ApiError($"signing out needs the session's {DashboardSessions.CsrfHeader} header"), statusCode: StatusCodes.Status403Forbidden);
                }

                store.RemoveSession(s.Session.IdHash);
            }

            http.Response.Cookies.Delete(DashboardSessions.CookieName, DashboardSessions.CookieOptions(http.Request, null));
            return TypedResults.NoContent();
        });
    }
}

/// <summary>The token to sign in with.</summary>
public sealed record SessionRequest(string? Token);

/// <summary>Who is signed in: the token's name and role, the CSRF token for changing requests, when the session ends.</summary>
public sealed record SessionInfo(string Name, string Role, string Csrf, DateTimeOffset Expires);
