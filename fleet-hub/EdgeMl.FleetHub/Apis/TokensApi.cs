using EdgeMl.FleetHub.Security;
using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Apis;

/// <summary>REST (operator): API tokens for people and scripts, each with a role and an optional expiry; listed and revoked by name.</summary>
public static class TokensApi
{
    public static void MapTokensApi(this WebApplication app)
    {
        var api = app.MapGroup("/api/tokens");
        api.MapPost("/", IResult (TokenRequest request, IHubStore store, TimeProvider time) =>
        {
            var role = request.Role ?? ApiAuth.Viewer;
            if (!ApiAuth.Roles.Contains(role))
            {
                return TypedResults.BadRequest(new ApiError($"role '{role}' is not one of: {string.Join(", ", ApiAuth.Roles)}"));
            }

            if (request.ExpiresHours is { } h && (!double.IsFinite(h) || h <= 0 || h > 24 * 3650))
            {
                return TypedResults.BadRequest(new ApiError($"expiresHours {h} must be more than 0 and at most 87600 (ten years)"));
            }

            var name = request.Name ?? "";
            if (name.Length > 128) return TypedResults.BadRequest(new ApiError("name is longer than 128 characters"));
            if (name.Any(char.IsControl)) return TypedResults.BadRequest(new ApiError("name must not contain control characters"));
            if (ApiAuth.IsConfiguredName(name)) return TypedResults.BadRequest(new ApiError($"the name '{name}' is kept for --OperatorToken"));
            var now = time.GetUtcNow();
            var expires = request.ExpiresHours is { } hours ? now.AddHours(hours) : (DateTimeOffset?)null;
            var token = Secrets.New(role == ApiAuth.Operator ? "op_" : "view_");
            store.AddApiToken(Secrets.Hash(token), role, name, now, expires);
            return TypedResults.Ok(new TokenIssued(token, role, name, expires));
        }).RequireRole(ApiAuth.Operator);
        api.MapGet("/", (IHubStore store) => TypedResults.Ok(store.ApiTokens().Select(t => new TokenInfo(t.Name, t.Role, t.Created, t.Expires, t.RevokedAt, t.State)).ToList()))
            .RequireRole(ApiAuth.Operator);
        api.MapPost("/{name}/revoke", async Task<IResult> (string name, IHubStore store, Broker.IDeviceConnections connections, TimeProvider time) =>
        {
            var now = time.GetUtcNow();
            var tokens = store.ApiTokens();
            if (!tokens.Any(t => t.Name == name && t.State == "active")) return TypedResults.NotFound(new ApiError($"no active API token called '{name}' (edgeml tokens list)"));
            if (tokens.Any(t => t.Name == name && t.Role == ApiAuth.Operator && t.State == "active") && !tokens.Any(t => t.Name != name && t.Role == ApiAuth.Operator && t.State == "active"))
            {
                return TypedResults.Conflict(new ApiError($"'{name}' holds the last active operator token: create another one first (edgeml tokens create --role operator), or nobody could operate this hub"));
            }

            var revoked = store.RevokeApiTokens(name, now);
            await connections.DisconnectConsumersAsync(revoked).ConfigureAwait(false); // alert consumers logged in with them
            return TypedResults.Ok(new TokensRevoked(name, revoked.Count));
        }).RequireRole(ApiAuth.Operator);
    }
}

/// <summary>A new token: role (viewer, operator), a name to list and revoke it by, and hours until it expires (null: never).</summary>
public sealed record TokenRequest(string? Role, string? Name, double? ExpiresHours = null);

public sealed record TokenIssued(string Token, string Role, string Name, DateTimeOffset? Expires);

/// <summary>A token as listed; <see cref="State"/>: active, expired or revoked.</summary>
public sealed record TokenInfo(string Name, string Role, DateTimeOffset Created, DateTimeOffset? Expires, DateTimeOffset? RevokedAt, string State);

public sealed record TokensRevoked(string Name, int Revoked);
