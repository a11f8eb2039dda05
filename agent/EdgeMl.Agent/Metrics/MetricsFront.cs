using System.Net;
using System.Security.Cryptography;
using System.Text;

namespace EdgeMl.Agent.Metrics;

/// <summary>
/// What answers on <c>Agent:Metrics:Port</c>: exactly <c>GET</c>/<c>HEAD /metrics</c> is served; any other method on it
/// is a 405 (<c>Allow: GET, HEAD</c>), any other path a 404, each with a one-line plain-text body. OpenTelemetry's
/// HttpListener exporter serves any method on any path under its own prefix and leaves everything else to
/// HttpListener's HTML pages, so it listens on the same address and port under a path nobody can guess
/// (<see cref="ExporterPath"/>; the managed HttpListener of .NET routes a request to the longest matching prefix), and
/// this listener — prefix <c>/</c>, every other request — fetches a scrape from it over loopback.
/// A request HttpListener itself refuses (not HTTP, a Host header that is not the listener's address) still gets its own
/// HTML answer (docs/metrics.md).
/// </summary>
internal sealed class MetricsFront : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly HttpClient _client;
    private readonly string _scrapeUrl;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    /// <summary>Starts listening on <paramref name="host"/> (as HttpListener writes it: <c>+</c> for every interface) and <paramref name="port"/>.</summary>
    /// <param name="host">The prefix host, the same the exporter listens on.</param>
    /// <param name="loopbackHost">The host to fetch the exporter's scrape from (an address of this machine the listener binds).</param>
    /// <param name="port">The metrics port.</param>
    /// <param name="exporterPath">The exporter's own path (<see cref="ExporterPath"/>).</param>
    /// <exception cref="HttpListenerException">The port cannot be listened on.</exception>
    public MetricsFront(string host, string loopbackHost, int port, string exporterPath)
    {
        _listener.Prefixes.Add($"http://{host}:{port}/");
        _listener.IgnoreWriteExceptions = true;
        _listener.Start();
        _scrapeUrl = $"http://{loopbackHost}:{port}{exporterPath}/";
        _client = new HttpClient(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false }) { Timeout = TimeSpan.FromSeconds(10) };
        _loop = Task.Factory.StartNew(() => LoopAsync(_stop.Token), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
    }

    /// <summary>A fresh path for the exporter: <c>/</c> and 32 hex digits of randomness.</summary>
    public static string ExporterPath() => "/" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    private async Task LoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync().WaitAsync(ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return; // stopped
            }

            _ = Task.Run(() => AnswerAsync(context, ct), CancellationToken.None);
        }
    }

    private async Task AnswerAsync(HttpListenerContext context, CancellationToken ct)
    {
        var request = context.Request;
        var response = context.Response;
        try
        {
            var path = request.Url?.AbsolutePath;
            if (!string.Equals(path, "/metrics", StringComparison.Ordinal))
            {
                await PlainAsync(response, 404, "not found: this port serves only GET /metrics", ct).ConfigureAwait(false);
                return;
            }

            var head = request.HttpMethod == "HEAD";
            if (request.HttpMethod != "GET" && !head)
            {
                response.AddHeader("Allow", "GET, HEAD");
                await PlainAsync(response, 405, $"{new string(request.HttpMethod.Take(20).Where(c => !char.IsControl(c)).ToArray())} is not allowed: GET /metrics", ct).ConfigureAwait(false);
                return;
            }

            using var scrape = new HttpRequestMessage(HttpMethod.Get, _scrapeUrl);
            if (request.Headers["Accept"] is { Length: > 0 } accept) scrape.Headers.TryAddWithoutValidation("Accept", accept); // OpenMetrics negotiation
            using var answer = await _client.SendAsync(scrape, ct).ConfigureAwait(false);
            var body = await answer.Content.ReadAsByteArrayAsync(ct).ConfigureAwait(false);
            response.StatusCode = (int)answer.StatusCode;
            if (answer.Content.Headers.ContentType is { } type) response.ContentType = type.ToString();
            if (answer.Content.Headers.LastModified is { } modified) response.AddHeader("Last-Modified", modified.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
            if (!head)
            {
                response.ContentLength64 = body.Length;
                await response.OutputStream.WriteAsync(body, ct).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException or HttpListenerException or ObjectDisposedException or InvalidOperationException)
        {
            // The exporter did not answer (stopping), or the scraper went away: a 503 if anything can still be said.
            try
            {
                await PlainAsync(response, 503, "metrics are unavailable right now", CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception again) when (again is HttpListenerException or IOException or ObjectDisposedException or InvalidOperationException)
            {
            }
        }
        finally
        {
            try
            {
                response.Close();
            }
            catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException or InvalidOperationException)
            {
            }
        }
    }

    private static async Task PlainAsync(HttpListenerResponse response, int status, string message, CancellationToken ct)
    {
        var body = Encoding.UTF8.GetBytes(message + "\n");
        response.StatusCode = status;
        response.ContentType = "text/plain; charset=utf-8";
        response.ContentLength64 = body.Length;
        await response.OutputStream.WriteAsync(body, ct).ConfigureAwait(false);
    }

    public void Dispose()
    {
        _stop.Cancel();
        try
        {
            _listener.Stop();
            _listener.Close();
        }
        catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
        {
        }

        _loop.Wait(TimeSpan.FromSeconds(5));
        _client.Dispose();
        _stop.Dispose();
    }
}
