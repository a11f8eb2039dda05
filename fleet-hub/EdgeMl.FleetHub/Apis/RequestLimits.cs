using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace EdgeMl.FleetHub.Apis;

/// <summary>
/// The hub's limits on a request's URL and headers, answered in the API's own shape. Kestrel answers a request over its
/// limits itself, before any middleware runs, with an empty body (414, 431) — a client could not tell what was wrong.
/// So Kestrel's limits are set a little above the documented ones (<see cref="KestrelUrlBytes"/>,
/// <see cref="KestrelHeaderBytes"/>, <see cref="KestrelHeaderCount"/>), and the documented ones are enforced here, first
/// in the pipeline: a URL over <see cref="MaxUrlBytes"/> is a 414, headers over <see cref="MaxHeaderBytes"/> or
/// <see cref="MaxHeaderCount"/> a 431, each with <c>{"error": "…"}</c> naming the limit (plain text on the metrics port).
/// What only Kestrel sees stays Kestrel's (an empty 400/414/431): a request line or header that is not HTTP at all, and
/// a request beyond the raised limits (docs/security.md).
/// </summary>
public static class RequestLimits
{
    /// <summary>Longest request target (path and query string, as sent) the API accepts: 8 KiB (Kestrel's own default).</summary>
    public const int MaxUrlBytes = 8 * 1024;

    /// <summary>Largest total of header names and values the API accepts: 32 KiB (Kestrel's own default).</summary>
    public const int MaxHeaderBytes = 32 * 1024;

    /// <summary>Most headers a request may have: 100 (Kestrel's own default).</summary>
    public const int MaxHeaderCount = 100;

    /// <summary>Kestrel's request-line limit: room for a target up to 8 × <see cref="MaxUrlBytes"/> to reach the check here.</summary>
    public const int KestrelUrlBytes = 64 * 1024;

    /// <summary>Kestrel's header-size limit: 4 × <see cref="MaxHeaderBytes"/>.</summary>
    public const int KestrelHeaderBytes = 128 * 1024;

    /// <summary>Kestrel's header-count limit: 4 × <see cref="MaxHeaderCount"/>.</summary>
    public const int KestrelHeaderCount = 400;

    /// <summary>Raises Kestrel's limits above the documented ones, so that the documented ones are answered by <see cref="UseRequestLimits"/>.</summary>
    public static void Raise(KestrelServerLimits limits)
    {
        limits.MaxRequestLineSize = KestrelUrlBytes;
        limits.MaxRequestHeadersTotalSize = KestrelHeaderBytes;
        limits.MaxRequestHeaderCount = KestrelHeaderCount;
    }

    /// <summary>Refuses a request over the documented limits (first middleware); <paramref name="metricsPort"/>: its answers are plain text.</summary>
    public static WebApplication UseRequestLimits(this WebApplication app, int metricsPort)
    {
        app.Use(async (http, next) =>
        {
            if (Refusal(http) is { } refusal)
            {
                http.Response.StatusCode = refusal.Status;
                http.Response.Headers.Connection = "close"; // what is left of a request this big is not worth reading
                if (metricsPort > 0 && http.Connection.LocalPort == metricsPort)
                {
                    http.Response.ContentType = "text/plain; charset=utf-8";
                    await http.Response.WriteAsync(refusal.Message + "\n").ConfigureAwait(false);
                }
                else
                {
                    await http.Response.WriteAsJsonAsync(new Security.ApiError(refusal.Message)).ConfigureAwait(false);
                }

                return;
            }

            await next(http).ConfigureAwait(false);
        });
        return app;
    }

    /// <summary>The status and message for a request over a documented limit, or null when it is within them.</summary>
    internal static (int Status, string Message)? Refusal(HttpContext http)
    {
        var target = http.Features.Get<IHttpRequestFeature>()?.RawTarget ?? $"{http.Request.PathBase}{http.Request.Path}{http.Request.QueryString}";
        if (target.Length > MaxUrlBytes)
        {
            return (StatusCodes.Status414UriTooLong, $"the URL is {target.Length} bytes; this hub accepts at most {MaxUrlBytes} (path and query string)");
        }

        var count = 0;
        long bytes = 0;
        foreach (var (name, values) in http.Request.Headers)
        {
            foreach (var value in values)
            {
                count++;
                bytes += name.Length + (value?.Length ?? 0);
            }
        }

        if (count > MaxHeaderCount) return (StatusCodes.Status431RequestHeaderFieldsTooLarge, $"the request has {count} headers; this hub accepts at most {MaxHeaderCount}");
        if (bytes > MaxHeaderBytes)
        {
            return (StatusCodes.Status431RequestHeaderFieldsTooLarge, $"the request's headers are {bytes} bytes; this hub accepts at most {MaxHeaderBytes} (names and values)");
        }

        return null;
    }
}
