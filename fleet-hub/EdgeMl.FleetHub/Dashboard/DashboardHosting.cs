using Microsoft.Extensions.FileProviders;

namespace EdgeMl.FleetHub.Dashboard;

/// <summary>
/// Serves the dashboard (a static single-page app built from <c>fleet-hub/dashboard</c> by <c>./build.sh</c> into
/// <c>DashboardFiles/</c>, copied next to <c>edgeml-hub.dll</c> on build and publish) at <c>/</c>. Nothing is loaded
/// from elsewhere at run time; the Content-Security-Policy says so to the browser too. A hub built without the
/// dashboard answers <c>/</c> with a page saying how to build it.
/// </summary>
public static class DashboardHosting
{
    /// <summary>Where the built dashboard lies: beside the hub's assembly.</summary>
    public static string Root => Path.Combine(AppContext.BaseDirectory, "DashboardFiles");

    private const string Policy =
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

    public static WebApplication UseDashboard(this WebApplication app)
    {
        app.Use(async (context, next) =>
        {
            if (!context.Request.Path.StartsWithSegments("/api", StringComparison.Ordinal))
            {
                context.Response.Headers.ContentSecurityPolicy = Policy;
                context.Response.Headers.XContentTypeOptions = "nosniff";
                context.Response.Headers["Referrer-Policy"] = "no-referrer";
            }

            await next(context).ConfigureAwait(false);
        });
        if (File.Exists(Path.Combine(Root, "index.html")))
        {
            var files = new PhysicalFileProvider(Root);
            app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = files });
            app.UseStaticFiles(new StaticFileOptions
            {
                FileProvider = files,
                // index.html always fresh (it names the bundle); the bundle itself is small and revalidated.
                OnPrepareResponse = c => c.Context.Response.Headers.CacheControl = "no-cache",
            });
        }
        else
        {
            app.MapGet("/", () => Results.Content(
                "<!doctype html><title>EdgeMl hub</title><p>This hub was built without its dashboard: run <code>./build.sh</code> (it builds fleet-hub/dashboard with npm).</p>",
                "text/html; charset=utf-8"));
        }

        return app;
    }
}
