using EdgeMl.FleetHub.Security;
using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Apis;

/// <summary>REST (operator): API tokens for people and scripts, each with a role.</summary>
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

            var token = Secrets.New(role == ApiAuth.Operator ? "op_" : "view_");
            store.AddApiToken(Secrets.Hash(token), role, request.Name ?? "", time.GetUtcNow());
            return TypedResults.Ok(new TokenIssued(token, role, request.Name ?? ""));
        }).RequireRole(ApiAuth.Operator);
        api.MapGet("/", (IHubStore store) => TypedResults.Ok(store.ApiTokens().Select(t => new TokenInfo(t.Name, t.Role, t.Created)).ToList()))
            .RequireRole(ApiAuth.Operator);
    }
}

public sealed record TokenRequest(string? Role, string? Name);

public sealed record TokenIssued(string Token, string Role, string Name);

public sealed record TokenInfo(string Name, string Role, DateTimeOffset Created);
