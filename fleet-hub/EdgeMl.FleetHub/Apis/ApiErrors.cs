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
        app.UseExceptionHandler(new ExceptionHandlerOptions
        {
            ExceptionHandler = Answer,
            // A client's mistake (a body that does not bind: RouteHandlerOptions.ThrowOnBadRequest) is answered, not logged as
            // the hub's own error; everything else is logged by the middleware as before.
            SuppressDiagnosticsCallback = c => c.Exception is BadHttpRequestException,
        });
        app.UseStatusCodePages(async status =>
        {
            var r = status.HttpContext.Response;
            if (r.HasStarted || r.ContentLength > 0 || r.ContentType is not null) return;
            var message = r.StatusCode switch
            {
                StatusCodes.Status400BadRequest => GenericBadRequest,
                StatusCodes.Status404NotFound => $"no such API: {status.HttpContext.Request.Path}",
                StatusCodes.Status405MethodNotAllowed => $"{status.HttpContext.Request.Method} is not allowed on {status.HttpContext.Request.Path}",
                StatusCodes.Status413PayloadTooLarge => TooLarge(status.HttpContext),
                StatusCodes.Status415UnsupportedMediaType => NotJson,
                _ => $"HTTP {r.StatusCode}",
            };
            await r.WriteAsJsonAsync(new Security.ApiError(message)).ConfigureAwait(false);
        });
        return app;
    }

    /// <summary>The answer to an exception no endpoint handled: a 4xx for a client's mistake, 503 for a store away, else 500.</summary>
    private static async Task Answer(HttpContext context)
    {
        var e = context.Features.Get<IExceptionHandlerFeature>()?.Error;
        var (status, message) = e switch
        {
            BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge } =>
                (StatusCodes.Status413PayloadTooLarge, TooLarge(context)),
            // A body that does not bind: the JSON path of the field that did not fit ("$.tags"), not only the parameter's name.
            BadHttpRequestException { InnerException: System.Text.Json.JsonException json } bad => (bad.StatusCode, BodyProblem(json)),
            BadHttpRequestException { StatusCode: StatusCodes.Status415UnsupportedMediaType } => (StatusCodes.Status415UnsupportedMediaType, NotJson),
            // No body where the call binds one ("Required parameter … was not provided from body", "Implicit body … no body"):
            // said in the API's words, not the framework's parameter names.
            BadHttpRequestException { StatusCode: StatusCodes.Status400BadRequest } bad when bad.Message.Contains("body", StringComparison.OrdinalIgnoreCase) =>
                (StatusCodes.Status400BadRequest, "bad request: this call needs a JSON body (Content-Type: application/json)"),
            BadHttpRequestException { StatusCode: StatusCodes.Status400BadRequest } => (StatusCodes.Status400BadRequest, GenericBadRequest),
            BadHttpRequestException bad => (bad.StatusCode, $"bad request: {bad.Message}"),
            // The store cannot be reached (PostgreSQL away or restarting, a disk error): the client may try again.
            IOException or TimeoutException or Npgsql.NpgsqlException =>
                (StatusCodes.Status503ServiceUnavailable, $"the hub's store is unavailable, try again: {StoreReason(e)}"),
            _ => (StatusCodes.Status500InternalServerError, "internal error (logged on the hub)"),
        };
        if (status >= 500) LogUnhandled(HubLogger(context), context.Request.Method, context.Request.Path, status == StatusCodes.Status503ServiceUnavailable ? message : e?.ToString() ?? "?");
        context.Response.StatusCode = status;
        if (status == StatusCodes.Status503ServiceUnavailable) context.Response.Headers.RetryAfter = "5";
        await context.Response.WriteAsJsonAsync(new Security.ApiError(message)).ConfigureAwait(false);
    }

    /// <summary>The logger the hub's own lines go to (the application's name, as <c>app.Logger</c>).</summary>
    private static ILogger HubLogger(HttpContext context) =>
        context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(context.RequestServices.GetRequiredService<IHostEnvironment>().ApplicationName);

    private const string GenericBadRequest = "bad request: the JSON body or a query parameter is malformed, of the wrong type, or missing";

    private const string NotJson = "the body must be JSON (Content-Type: application/json)";

    /// <summary>
    /// A JSON body that does not bind, in one line: a key given twice (<c>AllowDuplicateProperties = false</c>) named with
    /// where it is, else the JSON path of the field that did not fit (<c>$.tags</c>) and the serializer's reason.
    /// </summary>
    private static string BodyProblem(System.Text.Json.JsonException json)
    {
        var path = json.Path ?? "$";
        return json.Message.StartsWith("Duplicate propert", StringComparison.Ordinal)
            ? $"bad request: the body gives '{QueryValues.Printable(LastKey(path))}' twice (at {path}): each key may appear once (names match in any case)"
            : $"bad request: the body does not fit at {path}: {json.Message.Split(" Path:")[0]}";
    }

    /// <summary>The last key of a JSON path as System.Text.Json writes it: <c>$.tags.k</c> → k, <c>$['a b']</c> → a b.</summary>
    private static string LastKey(string path)
    {
        if (path.EndsWith("']", StringComparison.Ordinal) && path.LastIndexOf("['", StringComparison.Ordinal) is >= 0 and var open) return path[(open + 2)..^2];
        return path[(path.LastIndexOf('.') + 1)..];
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
