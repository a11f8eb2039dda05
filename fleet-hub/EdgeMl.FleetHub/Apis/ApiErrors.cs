using Microsoft.AspNetCore.Diagnostics;

namespace EdgeMl.FleetHub.Apis;

/// <summary>
/// Every answer of the API that is not a success has a JSON body <c>{"error": "…"}</c> (<see cref="Security.ApiError"/>):
/// a client's mistake that ASP.NET Core itself catches (malformed JSON body, a body over the limit, a wrong route or
/// method) is a 4xx saying what was wrong; a store that cannot be reached (PostgreSQL away, a disk error) is a 503 with
/// <c>Retry-After: 5</c> and its reason; any other exception no endpoint handled is a 500 with no internals in it (logged).
/// </summary>
public static partial class ApiErrors
{
    public static WebApplication UseApiErrors(this WebApplication app)
    {
        app.UseExceptionHandler(errors => errors.Run(async context =>
        {
            var e = context.Features.Get<IExceptionHandlerFeature>()?.Error;
            var (status, message) = e switch
            {
                BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge } =>
                    (StatusCodes.Status413PayloadTooLarge, TooLarge(context)),
                // A body that does not bind: the JSON path of the field that did not fit ("$.tags"), not only the parameter's name.
                BadHttpRequestException { InnerException: System.Text.Json.JsonException json } bad =>
                    (bad.StatusCode, $"bad request: the body does not fit at {json.Path ?? "$"}: {json.Message.Split(" Path:")[0]}"),
                BadHttpRequestException bad => (bad.StatusCode, $"bad request: {bad.Message}"),
                // The store cannot be reached (PostgreSQL away or restarting, a disk error): the client may try again.
                IOException or TimeoutException or Npgsql.NpgsqlException =>
                    (StatusCodes.Status503ServiceUnavailable, $"the hub's store is unavailable, try again: {StoreReason(e)}"),
                _ => (StatusCodes.Status500InternalServerError, "internal error (logged on the hub)"),
            };
            if (status >= 500) LogUnhandled(app.Logger, context.Request.Method, context.Request.Path, status == StatusCodes.Status503ServiceUnavailable ? message : e?.ToString() ?? "?");
            context.Response.StatusCode = status;
            if (status == StatusCodes.Status503ServiceUnavailable) context.Response.Headers.RetryAfter = "5";
            await context.Response.WriteAsJsonAsync(new Security.ApiError(message)).ConfigureAwait(false);
        }));
        app.UseStatusCodePages(async status =>
        {
            var r = status.HttpContext.Response;
            if (r.HasStarted || r.ContentLength > 0 || r.ContentType is not null) return;
            var message = r.StatusCode switch
            {
                StatusCodes.Status400BadRequest => "bad request: the JSON body or a query parameter is malformed, of the wrong type, or missing",
                StatusCodes.Status404NotFound => $"no such API: {status.HttpContext.Request.Path}",
                StatusCodes.Status405MethodNotAllowed => $"{status.HttpContext.Request.Method} is not allowed on {status.HttpContext.Request.Path}",
                StatusCodes.Status413PayloadTooLarge => TooLarge(status.HttpContext),
                StatusCodes.Status415UnsupportedMediaType => "the body must be JSON (Content-Type: application/json)",
                _ => $"HTTP {r.StatusCode}",
            };
            await r.WriteAsJsonAsync(new Security.ApiError(message)).ConfigureAwait(false);
        });
        return app;
    }

    /// <summary>The store's own one-line reason (Npgsql's message without its SQLSTATE prefix noise); never a stack trace.</summary>
    private static string StoreReason(Exception e) => e.Message.ReplaceLineEndings(" ");

    [LoggerMessage(EventId = 2600, Level = LogLevel.Error, Message = "Unhandled error in {Method} {Path}: {Error}")]
    private static partial void LogUnhandled(ILogger logger, string method, string path, string error);

    /// <summary>The 413 message: a model push's limit is --MaxPackageMb, every other call's <see cref="HubSettings.MaxJsonBodyBytes"/>.</summary>
    private static string TooLarge(HttpContext context) =>
        HttpMethods.IsPost(context.Request.Method) && context.Request.Path.Equals("/api/models", StringComparison.OrdinalIgnoreCase)
            ? $"the request body is larger than this hub accepts ({context.RequestServices.GetRequiredService<HubSettings>().MaxPackageMb} MB, --MaxPackageMb)"
            : $"the request body is larger than this call accepts ({HubSettings.MaxJsonBodyBytes >> 10} KiB; only a model push may be bigger)";
}
