using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Security;

/// <summary>
/// HTTP API access: <c>Authorization: Bearer TOKEN</c>, or the dashboard's session cookie (<see cref="DashboardSessions"/>). Two roles: <c>viewer</c> (field engineers: read only)
/// and <c>operator</c> (also enrolls and revokes devices, creates tokens). The first start writes an operator
/// token to <c>{data}/operator.token</c> (mode 600); more tokens come from <c>edgeml tokens create</c>.
/// </summary>
public static partial class ApiAuth
{
    public const string Viewer = "viewer";
    public const string Operator = "operator";
    /// <summary>An enrolled device (HTTP Basic with its broker credentials): may only download packages.</summary>
    public const string Device = "device";
    public static readonly IReadOnlyList<string> Roles = [Viewer, Operator];

    /// <summary>The name the <c>--OperatorToken</c> token is kept under.</summary>
    public const string ConfiguredName = "configured";

    public static string OperatorTokenPath(string dataDirectory) => Path.Combine(dataDirectory, "operator.token");

    /// <summary>
    /// Makes sure an operator can get in: takes <c>--OperatorToken</c> into the store, and creates the bootstrap token
    /// file when the hub has no operator token. The configured token's rule depends on who else uses the store:
    /// <list type="bullet">
    /// <item>The embedded LiteDB store has one hub: the configured token is the one on its command line now; one removed
    /// or changed since the last start stops working (kept under the name <c>configured</c>).</item>
    /// <item>A shared PostgreSQL store (<c>--Store</c>) has replicas, started one by one, and other processes may open it:
    /// a start never removes a configured token. A new <c>--OperatorToken</c> is added next to the ones there, named
    /// <c>configured-</c> and the first 8 hex digits of its hash, with a warning naming the other configured tokens that
    /// still work (an operator revokes one with <c>edgeml tokens revoke NAME</c> once no replica is started with it:
    /// rotation keeps both working during the roll). A token revoked that way is not brought back by a replica still
    /// started with it (a warning says so).</item>
    /// </list>
    /// </summary>
    public static void Bootstrap(IHubStore store, HubSettings settings, TimeProvider time, ILogger logger)
    {
        var now = time.GetUtcNow();
        var configured = settings.OperatorToken.Length > 0 ? Secrets.Hash(settings.OperatorToken) : null;
        if (settings.Store.Length == 0)
        {
            // One hub: the configured token is the one on the command line now; one removed or changed since the last start stops working.
            store.RemoveApiTokens(ConfiguredName, except: configured);
            if (configured is not null && store.ApiTokenRole(configured, now) is null)
            {
                store.AddApiToken(configured, Operator, ConfiguredName, now);
            }
        }
        else if (configured is not null)
        {
            if (store.ApiTokenName(configured) is { } known)
            {
                if (store.ApiTokenRole(configured, now) is null) LogConfiguredRevoked(logger, known);
            }
            else
            {
                var name = $"{ConfiguredName}-{configured[..8]}";
                store.AddApiToken(configured, Operator, name, now);
                var others = store.ApiTokens().Where(t => IsConfiguredName(t.Name) && t.Name != name && t.State == "active").Select(t => t.Name).ToList();
                if (others.Count > 0) LogConfiguredAdded(logger, name, string.Join(", ", others));
            }
        }

        if (store.HasApiTokens(Operator, now)) return;
        var token = Secrets.New("op_");
        var path = OperatorTokenPath(settings.Data);
        // Written whole, then renamed: whoever sees the file sees the token.
        File.WriteAllText(path + ".tmp", token + "\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path + ".tmp", UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.Move(path + ".tmp", path, overwrite: true);
        store.AddApiToken(Secrets.Hash(token), Operator, "bootstrap", time.GetUtcNow());
        LogBootstrap(logger, path);
    }

    /// <summary>
    /// An endpoint filter: 401 without a known token (Bearer header, or the dashboard's session cookie), 403 when the
    /// token's role is below <paramref name="role"/>, and 403 for a changing request signed in by cookie without the
    /// session's CSRF token (<see cref="DashboardSessions"/>). The role is kept as endpoint metadata (<see cref="RoleRequired"/>)
    /// as well, for middleware that must not answer a caller the endpoint would refuse.
    /// </summary>
    public static TBuilder RequireRole<TBuilder>(this TBuilder builder, string role) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new RoleRequired(role)).AddEndpointFilter(async (context, next) =>
            Refusal(context.HttpContext, role) ?? await next(context).ConfigureAwait(false));

    /// <summary>The role an endpoint requires (<see cref="RequireRole"/>), as endpoint metadata.</summary>
    public sealed record RoleRequired(string Role);

    /// <summary>
    /// The answer for a caller without <paramref name="role"/> (401 without a known token, 403 below the role), or null
    /// when the caller has it. For middleware (endpoint filters do not run on plain request-delegate endpoints).
    /// </summary>
    public static IResult? Refusal(HttpContext http, string role)
    {
        var header = http.Request.Headers.Authorization.ToString();
        var token = BearerToken(http);
        var store = http.RequestServices.GetRequiredService<IHubStore>();
        var now = http.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();
        string? has;
        if (token.Length > 0)
        {
            has = store.ApiTokenRole(Secrets.Hash(token), now);
        }
        else if (header.Length == 0 && DashboardSessions.Find(http, store, now) is { } signedIn)
        {
            if (!DashboardSessions.CsrfHolds(http.Request, signedIn.Session))
            {
                return Results.Json(new ApiError($"this request changes something and is signed in by the dashboard's cookie: it needs the session's {DashboardSessions.CsrfHeader} header"),
                    statusCode: StatusCodes.Status403Forbidden);
            }

            has = signedIn.Role;
        }
        else
        {
            has = role == Device ? DeviceRole(store, header) : null;
        }

        if (has is null)
        {
            http.Response.Headers.WWWAuthenticate = "Bearer";
            return Results.Json(new ApiError(token.Length > 0
                ? "this API token is not known, revoked or expired (see `edgeml tokens list`)"
                : "an API token is needed: Authorization: Bearer TOKEN (see `edgeml login`), or sign in on the dashboard"), statusCode: StatusCodes.Status401Unauthorized);
        }

        return Rank(has) < Rank(role)
            ? Results.Json(new ApiError($"this needs the '{role}' role; the token has '{has}'"), statusCode: StatusCodes.Status403Forbidden)
            : null;
    }

    /// <summary>
    /// Whether the caller's API token (Bearer) or dashboard session still holds <paramref name="role"/> now: for responses
    /// that last (the event stream), checked again as they go, so a revoked token or a sign-out ends them too. Touches no
    /// response header (the response has started); a store that cannot answer counts as no.
    /// </summary>
    public static bool StillAllowed(HttpContext http, string role)
    {
        try
        {
            var token = BearerToken(http);
            var store = http.RequestServices.GetRequiredService<IHubStore>();
            var now = http.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();
            var has = token.Length > 0 ? store.ApiTokenRole(Secrets.Hash(token), now)
                : http.Request.Headers.Authorization.Count == 0 && DashboardSessions.Find(http, store, now) is { } signedIn ? signedIn.Role : null;
            return has is not null && Rank(has) >= Rank(role);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or TimeoutException)
        {
            return false;
        }
    }

    /// <summary>Who is calling, for the audit trail: the name of the caller's API token (Bearer, or the one behind the dashboard session).</summary>
    public static string Actor(HttpContext http, IHubStore store)
    {
        var token = BearerToken(http);
        var hash = token.Length > 0 ? Secrets.Hash(token)
            : DashboardSessions.Find(http, store, http.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow()) is { } s ? s.Session.TokenHash : null;
        return hash is not null && store.ApiTokenName(hash) is { Length: > 0 } name ? name : "unknown";
    }

    private static string BearerToken(HttpContext http)
    {
        var header = http.Request.Headers.Authorization.ToString();
        return header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header["Bearer ".Length..].Trim() : "";
    }

    private static int Rank(string role) => role == Operator ? 2 : role == Viewer ? 1 : role == Device ? 0 : -1;

    /// <summary>Devices fetch their model packages with HTTP Basic: device id and the broker password from enrollment.</summary>
    private static string? DeviceRole(IHubStore store, string header)
    {
        if (!header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase)) return null;
        try
        {
            var pair = System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(header["Basic ".Length..].Trim()));
            var colon = pair.IndexOf(':', StringComparison.Ordinal);
            return colon > 0 && store.CheckDevice(pair[..colon], pair[(colon + 1)..]) == DeviceAccess.Allowed ? Device : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    /// <summary>Whether <paramref name="name"/> is a <c>--OperatorToken</c> token's (<c>configured</c>, or <c>configured-HASH8</c> on a shared store): kept from <c>edgeml tokens create</c>.</summary>
    public static bool IsConfiguredName(string name) =>
        name == ConfiguredName || name.StartsWith(ConfiguredName + "-", StringComparison.Ordinal);

    [LoggerMessage(EventId = 2401, Level = LogLevel.Warning, Message = "--OperatorToken is new on the shared store: added as {Name}; the configured operator token(s) {Others} still work on every replica. Once no replica is started with one, revoke it: edgeml tokens revoke NAME")]
    private static partial void LogConfiguredAdded(ILogger logger, string name, string others);

    [LoggerMessage(EventId = 2402, Level = LogLevel.Warning, Message = "--OperatorToken ({Name}) was revoked on the shared store: it is not accepted; start this replica with the current one")]
    private static partial void LogConfiguredRevoked(ILogger logger, string name);

    [LoggerMessage(EventId = 2400, Level = LogLevel.Warning, Message = "No operator token yet: created one in {Path} (use it with `edgeml login`)")]
    private static partial void LogBootstrap(ILogger logger, string path);
}

public sealed record ApiError(string Error);
