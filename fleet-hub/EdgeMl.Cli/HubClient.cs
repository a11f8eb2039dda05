using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

using EdgeMl.CommandLine;

namespace EdgeMl.Cli;

/// <summary>
/// The hub's REST API for the CLI. Where: <c>--hub URL</c>, else <c>EDGEML_HUB</c>, else what <c>edgeml login</c>
/// saved, else http://127.0.0.1:8080. Token: <c>--token</c>, <c>EDGEML_TOKEN</c>, or the saved login.
/// </summary>
public sealed class HubClient : IDisposable
{
    private readonly HttpClient _http;

    public HubClient(Uri hub, string? token)
    {
        Hub = hub;
        _http = new HttpClient { BaseAddress = hub, Timeout = TimeSpan.FromSeconds(30) };
        if (!string.IsNullOrEmpty(token)) _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
    }

    public Uri Hub { get; }

    public static HubClient From(ParsedArgs args)
    {
        var saved = LoginFile.Read();
        var (hub, from) = args.Get("hub") is { } h ? (h, "--hub")
            : Environment.GetEnvironmentVariable("EDGEML_HUB") is { } env ? (env, "EDGEML_HUB")
            : saved?.Hub is { } savedHub ? (savedHub, $"the hub saved in {LoginFile.PathName}")
            : ("http://127.0.0.1:8080", "the default hub");
        var token = args.Get("token") ?? Environment.GetEnvironmentVariable("EDGEML_TOKEN") ?? saved?.Token;
        if (from == "--hub") return new HubClient(ParseHub(hub), token); // checked while parsing already
        return EdgeMl.Protocol.Text.HubUrls.TryParse(hub, out var uri, out var error)
            ? new HubClient(uri, token)
            : throw new HubException($"{from}: {error} (run `edgeml login --hub URL --token TOKEN` again, or pass --hub)");
    }

    /// <summary><c>--hub</c> as every EdgeMl program reads it (<see cref="EdgeMl.Protocol.Text.HubUrls"/>: a bare host means port 8080).</summary>
    public static Uri ParseHub(string value) =>
        EdgeMl.Protocol.Text.HubUrls.TryParse(value, out var uri, out var error) ? uri : throw new UsageException($"--hub: {error}");

    public Task<JsonNode> GetAsync(string path) => SendAsync(HttpMethod.Get, path, null);

    /// <summary>A GET whose answer is not JSON (CSV export).</summary>
    public Task<string> GetTextAsync(string path) => SendTextAsync(HttpMethod.Get, path, null);

    /// <summary>Uploads a file as the request body, reporting (sent, total) as it goes.</summary>
    public Task<JsonNode> PostFileAsync(string path, string file, Action<long, long> progress) =>
        SendAsync(HttpMethod.Post, path, null, new ProgressContent(file, progress));

    public Task<JsonNode> PostAsync(string path, JsonNode body) => SendAsync(HttpMethod.Post, path, body);

    private async Task<JsonNode> SendAsync(HttpMethod method, string path, JsonNode? body, HttpContent? content = null)
    {
        var text = await SendTextAsync(method, path, body, content).ConfigureAwait(false);
        try
        {
            return (text.Length > 0 ? JsonNode.Parse(text) : null) ?? new JsonObject();
        }
        catch (JsonException)
        {
            throw new HubException($"{Hub} did not answer like an EdgeMl hub (its answer to {path} is not JSON: '{Excerpt(text)}'); check --hub");
        }
    }

    /// <summary>Sends; the answer's text, or a <see cref="HubException"/> that says why the hub refused or could not be reached.</summary>
    private async Task<string> SendTextAsync(HttpMethod method, string path, JsonNode? body, HttpContent? content = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null) request.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        if (content is not null) request.Content = content;
        // A file upload first asks whether the hub takes it (HTTP/1.1 "Expect: 100-continue", RFC 9110 10.1.1): a hub that
        // refuses it (no or a wrong token, a viewer token) answers before a byte of the file is sent.
        if (content is ProgressContent) request.Headers.ExpectContinue = true;
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            // The inner exception says why (refused, TLS handshake, a server that is not HTTP).
            var why = e.InnerException is { } inner && !e.Message.Contains(inner.Message, StringComparison.Ordinal) ? $"{e.Message} ({inner.Message})" : e.Message;
            throw new HubException($"cannot reach the hub at {Hub}: {why}");
        }
        catch (TaskCanceledException)
        {
            throw new HubException($"the hub at {Hub} did not answer within {_http.Timeout.TotalSeconds:0} s");
        }

        using (response)
        {
            var text = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                var why = TryError(text) ?? (text.Length > 0 ? Excerpt(text) : response.ReasonPhrase);
                throw new HubException(response.StatusCode switch
                {
                    HttpStatusCode.Unauthorized => why ?? "an API token is needed",
                    HttpStatusCode.Forbidden => $"not allowed: {why}",
                    _ => $"{(int)response.StatusCode} {response.ReasonPhrase}: {why}",
                });
            }

            return text;
        }
    }

    /// <summary>The start of an answer that is not what was expected, on one line.</summary>
    private static string Excerpt(string text)
    {
        var line = string.Join(' ', text.Split(['\r', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        return line.Length <= 120 ? line : line[..120] + "…";
    }

    private static string? TryError(string text)
    {
        try
        {
            return JsonNode.Parse(text)?["error"]?.GetValue<string>();
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public void Dispose() => _http.Dispose();
}

/// <summary><c>edgeml login</c>'s memory: <c>$XDG_CONFIG_HOME/edgeml/login.json</c> (mode 600).</summary>
public static class LoginFile
{
    public sealed record Login(string Hub, string Token);

    public static string PathName =>
        Path.Combine(Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { Length: > 0 } x ? x
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config"), "edgeml", "login.json");

    public static Login? Read()
    {
        if (!File.Exists(PathName)) return null;
        try
        {
            var node = JsonNode.Parse(File.ReadAllText(PathName));
            return node?["hub"] is JsonValue h && h.TryGetValue<string>(out var hub) && node["token"] is JsonValue t && t.TryGetValue<string>(out var token)
                ? new Login(hub, token)
                : throw new HubException($"{PathName} is not a login (expected {{\"hub\": URL, \"token\": TOKEN}}): run `edgeml login --hub URL --token TOKEN` again, or delete it");
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            throw new HubException($"{PathName} cannot be read ({e.Message}): run `edgeml login --hub URL --token TOKEN` again, or delete it");
        }
    }

    public static void Write(Login login)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(PathName)!);
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var f = new FileStream(PathName, options);
        JsonSerializer.Serialize(f, new JsonObject { ["hub"] = login.Hub, ["token"] = login.Token });
    }
}

/// <summary>A file as a request body that says how far the upload is.</summary>
internal sealed class ProgressContent(string file, Action<long, long> progress) : HttpContent
{
    protected override async Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context)
    {
        await using var source = File.OpenRead(file);
        var buffer = new byte[64 * 1024];
        long sent = 0;
        int n;
        while ((n = await source.ReadAsync(buffer).ConfigureAwait(false)) > 0)
        {
            await stream.WriteAsync(buffer.AsMemory(0, n)).ConfigureAwait(false);
            sent += n;
            progress(sent, source.Length);
        }
    }

    protected override bool TryComputeLength(out long length)
    {
        length = new FileInfo(file).Length;
        return true;
    }
}
