using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using EdgeMl.Agent.Inference;
using EdgeMl.Protocol.Packages;
using Microsoft.Extensions.Logging;

namespace EdgeMl.Agent.Updates;

/// <summary>
/// Follows the hub's desired model: downloads the package (HTTP range requests: a cut download resumes where it
/// stopped), verifies size, SHA-256 and signature before anything else, and stages it in
/// <c>{data}/updates/staged.edgepkg</c>, reporting each phase (downloading → verified → staged, or failed with
/// the reason). Activation (two slots, shadow runs, rollback) is the next step of the rollout issue.
/// </summary>
public sealed partial class ModelUpdater(
    string dataDirectory, Sync.HubSettings hub, IReadOnlyList<string> trustedKeys, ModelManifest running,
    Func<ReportedState, Task> report, TimeProvider time, ILogger logger) : IDisposable
{
    private readonly Lock _gate = new();
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromMinutes(10) };
    private CancellationTokenSource? _current;
    private string? _target;

    public string UpdatesDirectory => Path.Combine(dataDirectory, "updates");
    public string StagedPath => Path.Combine(UpdatesDirectory, "staged.edgepkg");

    /// <summary>The latest desired state wins; a download for an older one is abandoned.</summary>
    public void OnDesired(DesiredModel desired)
    {
        var key = $"{desired.Name}@{desired.Version}#{desired.Sha256}";
        CancellationTokenSource cts;
        lock (_gate)
        {
            if (_target == key) return;
            _current?.Cancel();
            _current = cts = new CancellationTokenSource();
            _target = key;
        }

        _ = Task.Run(() => FollowAsync(desired, cts.Token), CancellationToken.None);
    }

    private string Active => $"{running.Name}@{running.Version}";

    private Task Report(string phase, DesiredModel d, string? reason = null, long? downloaded = null) =>
        report(new ReportedState { Phase = phase, Name = d.Name, Version = d.Version, Reason = reason, Active = Active, Downloaded = downloaded, At = time.GetUtcNow() });

    private async Task FollowAsync(DesiredModel d, CancellationToken ct)
    {
        try
        {
            if (d.Name == running.Name && d.Version == running.Version)
            {
                await Report("active", d).ConfigureAwait(false);
                return;
            }

            if (hub.HubUrl is null) throw new InvalidOperationException("no hub address to download from (enroll the device, or set Agent:Hub:HubUrl)");
            Directory.CreateDirectory(UpdatesDirectory);
            var part = Path.Combine(UpdatesDirectory, $"{Safe(d.Name)}-{Safe(d.Version)}.part");
            await Report("downloading", d, downloaded: File.Exists(part) ? new FileInfo(part).Length : 0).ConfigureAwait(false);
            await DownloadAsync(d, part, ct).ConfigureAwait(false);

            var length = new FileInfo(part).Length;
            if (length != d.SizeBytes) throw new InvalidDataException($"downloaded {length} bytes, the hub announced {d.SizeBytes}");
            string sha;
            await using (var f = File.OpenRead(part)) sha = Convert.ToHexStringLower(await SHA256.HashDataAsync(f, ct).ConfigureAwait(false));
            if (sha != d.Sha256)
            {
                File.Delete(part); // useless to resume a corrupt file
                throw new InvalidDataException($"SHA-256 {sha[..16]}… does not match the announced {d.Sha256[..Math.Min(16, d.Sha256.Length)]}…");
            }

            var package = ModelPackage.Open(part);
            if (package.Manifest.Name != d.Name || package.Manifest.Version != d.Version)
            {
                throw new InvalidDataException($"the package is {package.Manifest.Name}@{package.Manifest.Version}, not {d.Name}@{d.Version}");
            }

            PackageTrust.Enforce(package, trustedKeys, "Agent:TrustedKeys");
            await Report("verified", d).ConfigureAwait(false);
            File.Move(part, StagedPath, overwrite: true);
            LogStaged(logger, d.Name, d.Version);
            await Report("staged", d).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // A newer desired state took over.
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            // Whatever went wrong is reported with its reason: an update must never fail silently.
            LogFailed(logger, d.Name, d.Version, e.Message);
            lock (_gate) _target = null; // the same desired state may be tried again
            await Report("failed", d, e.Message).ConfigureAwait(false);
        }
    }

    /// <summary>Downloads into <paramref name="part"/>, resuming from its length; retries network errors with backoff.</summary>
    private async Task DownloadAsync(DesiredModel d, string part, CancellationToken ct)
    {
        var url = new Uri(new Uri(hub.HubUrl!), d.Url);
        for (var attempt = 1; ; attempt++)
        {
            var have = File.Exists(part) ? new FileInfo(part).Length : 0;
            if (have == d.SizeBytes) return;
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{hub.DeviceId}:{hub.Password}")));
            if (have > 0) request.Headers.Range = new RangeHeaderValue(have, null);
            try
            {
                using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
                if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden or HttpStatusCode.NotFound)
                {
                    throw new InvalidOperationException($"the hub refused the download ({(int)response.StatusCode})");
                }

                response.EnsureSuccessStatusCode();
                var append = response.StatusCode == HttpStatusCode.PartialContent;
                await using var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
                await using var file = new FileStream(part, append ? FileMode.Append : FileMode.Create, FileAccess.Write);
                await body.CopyToAsync(file, ct).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (e is HttpRequestException or IOException && attempt < 8 && !ct.IsCancellationRequested)
            {
                LogRetry(logger, d.Name, d.Version, attempt, e.Message);
                await Task.Delay(TimeSpan.FromSeconds(Math.Min(30, Math.Pow(2, attempt))), time, ct).ConfigureAwait(false);
            }
        }
    }

    private static string Safe(string s) => string.Concat(s.Select(c => char.IsLetterOrDigit(c) || c is '.' or '-' or '_' ? c : '_'));

    public void Dispose()
    {
        lock (_gate) _current?.Cancel();
        _http.Dispose();
    }

    [LoggerMessage(EventId = 1500, Level = LogLevel.Information, Message = "Model update {Name}@{Version} downloaded, verified and staged")]
    private static partial void LogStaged(ILogger logger, string name, string version);

    [LoggerMessage(EventId = 1501, Level = LogLevel.Warning, Message = "Model update {Name}@{Version} failed: {Reason}")]
    private static partial void LogFailed(ILogger logger, string name, string version, string reason);

    [LoggerMessage(EventId = 1502, Level = LogLevel.Warning, Message = "Download of {Name}@{Version} interrupted (attempt {Attempt}), resuming: {Error}")]
    private static partial void LogRetry(ILogger logger, string name, string version, int attempt, string error);
}
