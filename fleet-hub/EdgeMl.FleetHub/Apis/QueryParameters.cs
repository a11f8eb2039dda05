using Microsoft.AspNetCore.Routing;

namespace EdgeMl.FleetHub.Apis;

/// <summary>
/// Which query parameters each <c>/api</c> endpoint takes, and the rule that it takes no others: a request naming a
/// parameter its endpoint does not take is a 400 <c>unknown query parameter 'sinse' (this endpoint takes: limit, since,
/// until)</c>, so a misspelt or unsupported filter is never silently ignored (the answer would look right and be wrong).
/// An endpoint declares its parameters once, where it is mapped (<see cref="Takes"/>); one that declares none takes none.
/// Names match in any case, as the endpoints read them (<see cref="IQueryCollection"/>). The check is one middleware
/// (<see cref="UseQueryParameterCheck"/>) over every <c>/api</c> endpoint, so a new endpoint cannot forget it; a caller
/// that the endpoint's role refuses gets that refusal (401/403) rather than this 400.
/// </summary>
public static class QueryParameters
{
    /// <summary>The endpoint metadata <see cref="Takes"/> adds: the parameter names, in the order the error lists them.</summary>
    public sealed record Accepted(IReadOnlyList<string> Names);

    /// <summary>Declares the query parameters this endpoint takes (the only ones it accepts).</summary>
    public static TBuilder Takes<TBuilder>(this TBuilder builder, params string[] names) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new Accepted(names));

    /// <summary>
    /// Refuses, with a 400 naming them, the query parameters a matched <c>/api</c> endpoint does not take. After routing
    /// (which <see cref="WebApplication"/> runs first), before the endpoint.
    /// </summary>
    public static WebApplication UseQueryParameterCheck(this WebApplication app)
    {
        app.Use(async (http, next) =>
        {
            // A RouteEndpoint: a mapped API call (404 has no endpoint; 405's endpoint is not a RouteEndpoint and answers itself).
            if (http.Request.QueryString.HasValue && http.GetEndpoint() is RouteEndpoint endpoint
                && http.Request.Path.StartsWithSegments("/api", StringComparison.OrdinalIgnoreCase))
            {
                var takes = endpoint.Metadata.GetMetadata<Accepted>()?.Names ?? [];
                if (Problem(http.Request.Query, takes) is { } problem
                    && (endpoint.Metadata.GetMetadata<Security.ApiAuth.RoleRequired>() is not { } role || Security.ApiAuth.Refusal(http, role.Role) is null))
                {
                    http.Response.StatusCode = StatusCodes.Status400BadRequest;
                    await http.Response.WriteAsJsonAsync(new Security.ApiError(problem)).ConfigureAwait(false);
                    return;
                }
            }

            await next(http).ConfigureAwait(false);
        });
        return app;
    }

    /// <summary>
    /// The one-line error for the parameters of <paramref name="query"/> not in <paramref name="takes"/> (any case), or
    /// null when there are none: <c>unknown query parameter 'x' (this endpoint takes: a, b)</c>; several are named together.
    /// </summary>
    public static string? Problem(IQueryCollection query, IReadOnlyList<string> takes)
    {
        List<string>? unknown = null;
        foreach (var key in query.Keys)
        {
            if (!takes.Contains(key, StringComparer.OrdinalIgnoreCase)) (unknown ??= []).Add($"'{QueryValues.Printable(key)}'");
        }

        if (unknown is null) return null;
        var known = takes.Count == 0 ? "this endpoint takes no query parameters" : $"this endpoint takes: {string.Join(", ", takes)}";
        return $"unknown query parameter{(unknown.Count > 1 ? "s" : "")} {string.Join(", ", unknown.Take(5))}{(unknown.Count > 5 ? ", …" : "")} ({known})";
    }
}
