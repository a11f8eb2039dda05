using System.Net;
using System.Net.Sockets;
using EdgeMl.FleetHub.Security;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace EdgeMl.FleetHub.Metrics;

/// <summary>
/// Wiring of <c>GET /metrics</c>: OpenTelemetry's meter provider with its Prometheus exporter (the hub's own meter and
/// ASP.NET Core's <c>http.server.request.duration</c>). On the API's address the endpoint needs a viewer token, like
/// every other route; <see cref="HubSettings.MetricsPort"/> adds a listener that serves only <c>/metrics</c>, without one.
/// </summary>
public static class HubMetricsExtensions
{
    /// <summary>Registers the instruments and the exporter; with a metrics port, adds its listener to the hub's URLs.</summary>
    public static void AddHubMetrics(this WebApplicationBuilder builder, HubSettings settings)
    {
        builder.Services.AddSingleton<HubMetrics>();
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("edgeml-hub", serviceVersion: typeof(HubMetrics).Assembly.GetName().Version?.ToString(3)))
            .WithMetrics(m => m
                .AddMeter(HubMetrics.MeterName, "Microsoft.AspNetCore.Hosting")
                .AddPrometheusExporter(o =>
                {
                    o.ScopeInfoEnabled = false;
                    // No response cache (the exporter's default is 300 ms): a scrape shows what ingest has counted
                    // until now. What is costly to read (the fleet from the store) is sampled by HubMetrics instead.
                    o.ScrapeResponseCacheDurationMilliseconds = 0;
                }));
        if (settings.MetricsPort > 0)
        {
            // --urls (or its default) stays as it was; the metrics listener is one more address on the same server.
            var urls = builder.Configuration["urls"] is { Length: > 0 } given ? given : "http://localhost:5000";
            var address = IPAddress.Parse(settings.MetricsAddress);
            var host = address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
            builder.WebHost.UseUrls($"{urls};http://{host}:{settings.MetricsPort}");
        }
    }

    /// <summary>
    /// Serves <c>/metrics</c>: with a viewer token on the API's address; without one on the metrics port, which serves
    /// nothing else (404), so opening it to a monitoring network does not open the API.
    /// </summary>
    public static void MapHubMetrics(this WebApplication app, HubSettings settings)
    {
        app.Services.GetRequiredService<HubMetrics>(); // instruments exist from the start, not from the first scrape
        var port = settings.MetricsPort;
        bool OnMetricsPort(HttpContext http) => port > 0 && http.Connection.LocalPort == port;
        app.Use(async (http, next) =>
        {
            var isMetrics = http.Request.Path.Equals("/metrics", StringComparison.OrdinalIgnoreCase);
            if (OnMetricsPort(http))
            {
                // Only GET/HEAD of exactly /metrics; anything else a short plain-text answer (this port is not the JSON API).
                if (!string.Equals(http.Request.Path.Value, "/metrics", StringComparison.Ordinal))
                {
                    await PlainAsync(http, StatusCodes.Status404NotFound, "not found: this port serves only GET /metrics").ConfigureAwait(false);
                    return;
                }

                if (!HttpMethods.IsGet(http.Request.Method) && !HttpMethods.IsHead(http.Request.Method))
                {
                    http.Response.Headers.Allow = "GET, HEAD";
                    await PlainAsync(http, StatusCodes.Status405MethodNotAllowed, $"{Printable(http.Request.Method)} is not allowed: GET /metrics").ConfigureAwait(false);
                    return;
                }
            }
            else if (isMetrics && !HttpMethods.IsGet(http.Request.Method) && !HttpMethods.IsHead(http.Request.Method))
            {
                http.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
                http.Response.Headers.Allow = "GET, HEAD";
                await http.Response.WriteAsJsonAsync(new ApiError($"{Printable(http.Request.Method)} is not allowed on /metrics (GET or HEAD)")).ConfigureAwait(false);
                return;
            }

            await next(http).ConfigureAwait(false);
        });
        app.UseOpenTelemetryPrometheusScrapingEndpoint(meterProvider: null, predicate: http => http.Request.Path == "/metrics", path: null,
            configureBranchedPipeline: branch => branch.Use(async (http, next) =>
            {
                if (!OnMetricsPort(http) && ApiAuth.Refusal(http, ApiAuth.Viewer) is { } refused)
                {
                    await refused.ExecuteAsync(http).ConfigureAwait(false);
                    return;
                }

                await next(http).ConfigureAwait(false);
            }), optionsName: null);
    }

    private static Task PlainAsync(HttpContext http, int status, string message)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "text/plain; charset=utf-8";
        return http.Response.WriteAsync(message + "\n");
    }

    private static string Printable(string s) => new string(s.Take(20).Where(c => !char.IsControl(c)).ToArray());
}
