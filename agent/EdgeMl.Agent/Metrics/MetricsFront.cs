using System.Net;
using System.Text;

namespace EdgeMl.Agent.Metrics;

/// <summary>
/// What answers on <c>Agent:Metrics:Port</c>: exactly <c>GET</c>/<c>HEAD /metrics</c> is served (the text that
/// <see cref="AgentMetrics"/> renders, <c>text/plain; version=0.0.4</c>); any other method on it is a 405
/// (<c>Allow: GET, HEAD</c>), any other path a 404, each with a one-line plain-text body. A request HttpListener itself
/// refuses (not HTTP, a Host header that is not the listener's address) still gets its own HTML answer (docs/metrics.md).
/// </summary>
internal sealed class MetricsFront : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Func<string> _render;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    /// <summary>Starts listening on <paramref name="host"/> (as HttpListener writes it: <c>+</c> for every interface) and <paramref name="port"/>.</summary>
    /// <param name="host">The prefix host.</param>
    /// <param name="port">The metrics port.</param>
    /// <param name="render">One scrape's text.</param>
    /// <exception cref="HttpListenerException">The port cannot be listened on.</exception>
    public MetricsFront(string host, int port, Func<string> render)
    {
        _render = render;
        _listener.Prefixes.Add($"http://{host}:{port}/");
        _listener.IgnoreWriteExceptions = true;
        _listener.Start();
        _loop = Task.Factory.StartNew(() => LoopAsync(_stop.Token), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
    }

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

            var body = Encoding.UTF8.GetBytes(_render());
            response.StatusCode = 200;
            response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            if (!head)
            {
                response.ContentLength64 = body.Length;
                await response.OutputStream.WriteAsync(body, ct).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or HttpListenerException or ObjectDisposedException or InvalidOperationException)
        {
            // Stopping, or the scraper went away: a 503 if anything can still be said.
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
        _stop.Dispose();
    }
}
