using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using EdgeMl.Agent.Inference;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Protocol.Packages;
using Microsoft.Extensions.Logging;

namespace EdgeMl.Agent.Updates;

/// <summary>
/// Follows the hub's desired model: downloads the package (HTTP range requests: a cut download resumes where it
/// stopped), verifies size, SHA-256 and signature before anything else, stages it in
/// <c>{data}/updates/staged.edgepkg</c>, runs it in shadow beside the active model for the soak period, and — when
/// the desired state says activate — switches slots (<see cref="ModelSlots"/>: one durable write) and restarts the
/// runtime on the new model. A desired model that sits in the other slot already (the hub's rollback) is switched
/// to without a download. Every phase is reported: downloading → verified → staged → shadow → active, or failed /
/// rolled-back with the reason.
/// </summary>
public sealed partial class ModelUpdater(
    string dataDirectory, Sync.HubSettings hub, IReadOnlyList<string> trustedKeys, ModelSlots slots, UpdateContext context,
    Func<ReportedState, Task> report, TimeProvider time, ILogger logger) : IDisposable
{
    private readonly Lock _gate = new();
    private readonly HttpClient _http = Sync.HubHttp.Create(hub, TimeSpan.FromMinutes(10));
    private readonly Dictionary<string, ShadowFigures> _shadowed = [];
    private CancellationTokenSource? _current;
    private string? _target;

    public string UpdatesDirectory => Path.Combine(dataDirectory, "updates");
    public string StagedPath => Path.Combine(UpdatesDirectory, "staged.edgepkg");

    /// <summary>Test hook (see <see cref="ModelSlots.CrashPoint"/>): called at each phase boundary with the phase's name.</summary>
    public Action<string>? CrashPoint { get; set; }

    /// <summary>The latest desired state wins; a download or shadow run for an older one is abandoned.</summary>
    public void OnDesired(DesiredModel desired)
    {
        var key = $"{desired.Name}@{desired.Version}#{desired.Sha256}#{desired.Activate}#{desired.ShadowSeconds}";
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

    private ModelManifest Running => context.Manifest;
    private string Active => $"{Running.Name}@{Running.Version}";
    private string? Previous => slots.PreviousSlot is { } p ? ModelSlots.Describe(slots.ModelOf(p)) : null;

    private Task Report(string phase, string name, string version, string? reason = null, long? downloaded = null, ShadowFigures? shadow = null, string? rollout = null, bool? confirmed = null) =>
        report(new ReportedState
        {
            Phase = phase, Name = name, Version = version, Reason = reason, Active = Active, Previous = Previous, Downloaded = downloaded,
            Shadow = shadow, Confirmed = confirmed, Rollout = rollout, At = time.GetUtcNow(),
        });

    private Task Report(string phase, DesiredModel d, string? reason = null, long? downloaded = null, ShadowFigures? shadow = null) =>
        Report(phase, d.Name, d.Version, reason, downloaded, shadow, d.Rollout);

    /// <summary>What the device runs, reported when it starts: active (on trial or confirmed), or the rollback that just happened.</summary>
    public Task ReportStartAsync()
    {
        var state = slots.State;
        if (state.LastRollback is { } rb && !state.Trial)
        {
            return Report("rolled-back", rb.Name, rb.Version, rb.Reason, rollout: state.Terms?.Rollout);
        }

        return Report("active", Running.Name, Running.Version, confirmed: !state.Trial, rollout: state.Trial ? state.Terms?.Rollout : null);
    }

    /// <summary>
    /// A desired state from the hub failed validation (a hub newer than this agent, or a hostile writer on the broker):
    /// reported as <c>failed</c> with the reason, so the operator sees why the device does not follow, and ignored.
    /// </summary>
    public void OnDesiredRefused(string reason, string? name, string? version) =>
        _ = Report("failed", name ?? "", version ?? "", $"desired state refused: {reason}");

    /// <summary>The watch period passed: the model is confirmed.</summary>
    public Task ReportConfirmedAsync(string? rollout) => Report("active", Running.Name, Running.Version, confirmed: true, rollout: rollout);

    private async Task FollowAsync(DesiredModel d, CancellationToken ct)
    {
        try
        {
            var runningSha = slots.ModelOf(slots.ActiveSlot)?.Sha256;
            // Without a SHA-256 (a rollback to a model the hub's registry does not hold) name and version identify it.
            if (d.Sha256 == runningSha || ((runningSha is null || d.Sha256.Length == 0) && d.Name == Running.Name && d.Version == Running.Version))
            {
                var st = slots.State;
                await Report("active", d.Name, d.Version, confirmed: !st.Trial, rollout: d.Rollout, shadow: _shadowed.GetValueOrDefault(d.Sha256)).ConfigureAwait(false);
                return;
            }

            if (slots.Bad(d.Sha256) is { } bad)
            {
                // This model failed here before; it is not started again until the hub asks for another one.
                await Report("rolled-back", d, bad.Reason).ConfigureAwait(false);
                return;
            }

            if (slots.SlotWith(d.Sha256, d.Name, d.Version) is not null)
            {
                // The hub's rollback: the previous model is in the other slot, switch without a download.
                if (!d.Activate) return;
                LogSwitchBack(logger, d.Name, d.Version);
                slots.RollBack($"the hub asked for {d.Name}@{d.Version}", bad: false, time.GetUtcNow());
                context.Restart($"switched back to {d.Name}@{d.Version}");
                return;
            }

            if (d.Sha256.Length == 0) throw new InvalidDataException($"{d.Name}@{d.Version} is neither running nor in the other slot, and the hub gave no SHA-256 to download it by");
            if (trustedKeys.Count == 0 && hub.SigningKeys.Count == 0) throw new InvalidDataException(NoKeys); // before a byte is downloaded
            if (!await StagedAlreadyAsync(d, ct).ConfigureAwait(false))
            {
                if (hub.HubUrl is null) throw new InvalidOperationException("no hub address to download from (enroll the device, or set Agent:Hub:HubUrl)");
                Directory.CreateDirectory(UpdatesDirectory);
                var part = Path.Combine(UpdatesDirectory, $"{Safe(d.Name)}-{Safe(d.Version)}.part");
                await Report("downloading", d, downloaded: File.Exists(part) ? new FileInfo(part).Length : 0).ConfigureAwait(false);
                CrashPoint?.Invoke("downloading");
                await DownloadAsync(d, part, ct).ConfigureAwait(false);
                CrashPoint?.Invoke("downloaded");

                var length = new FileInfo(part).Length;
                if (length != d.SizeBytes)
                {
                    File.Delete(part);
                    throw new InvalidDataException($"downloaded {length} bytes, the hub announced {d.SizeBytes}");
                }

                var sha = await HashAsync(part, ct).ConfigureAwait(false);
                if (sha != d.Sha256)
                {
                    File.Delete(part); // useless to resume a corrupt file
                    throw new InvalidDataException($"SHA-256 {sha[..16]}… does not match the announced {d.Sha256[..Math.Min(16, d.Sha256.Length)]}…");
                }

                try
                {
                    Verify(d, part);
                }
                catch
                {
                    File.Delete(part);
                    throw;
                }

                await Report("verified", d).ConfigureAwait(false);
                CrashPoint?.Invoke("verified");
                File.Move(part, StagedPath, overwrite: true);
                LogStaged(logger, d.Name, d.Version);
                await Report("staged", d).ConfigureAwait(false);
                CrashPoint?.Invoke("staged");
            }

            var figures = _shadowed.GetValueOrDefault(d.Sha256);
            if (d.ShadowSeconds > 0 && figures is null)
            {
                figures = await ShadowAsync(d, ct).ConfigureAwait(false);
                lock (_gate) _shadowed[d.Sha256] = figures;
                CrashPoint?.Invoke("shadowed");
            }

            if (!d.Activate) return; // the hub decides (a rollout's gates)
            if (figures is not null && figures.Errors > 0 && figures.ErrorRate > (d.MaxErrorRate ?? 0))
            {
                throw new InvalidDataException($"not activated: the candidate failed on {figures.Errors} of {figures.Runs} windows in shadow");
            }

            var model = new SlotModel { Name = d.Name, Version = d.Version, Sha256 = d.Sha256 };
            var terms = new WatchTerms { WatchSeconds = d.WatchSeconds ?? 30, MaxLatencyRatio = d.MaxLatencyRatio ?? 0, MaxErrorRate = d.MaxErrorRate ?? 0, Rollout = d.Rollout };
            ct.ThrowIfCancellationRequested();
            CrashPoint?.Invoke("activating");
            slots.Activate(StagedPath, model, terms, context.LatencyP99Ms());
            CrashPoint?.Invoke("activated");
            LogActivated(logger, d.Name, d.Version, slots.ActiveSlot);
            context.Restart($"activated {d.Name}@{d.Version}");
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

    private const string NoKeys = "refused: this device trusts no signing keys, and a package that arrives over the air must be signed " +
                                  "(enroll with a hub started with --TrustedKeys, or set Agent:TrustedKeys)";

    /// <summary>
    /// A package that came over the air must be signed by a key this device trusts — <c>Agent:TrustedKeys</c> and the
    /// hub's signing keys handed over at enrollment — checked before the manifest is parsed or the model inflated.
    /// </summary>
    private void Verify(DesiredModel d, string path)
    {
        var keys = PackageTrust.LoadForUpdates(trustedKeys, hub.SigningKeys, $"{Configuration.AgentOptions.Section}:TrustedKeys");
        try
        {
            if (keys.Count == 0)
            {
                throw new InvalidDataException(NoKeys);
            }

            var package = ModelPackage.OpenSigned(path, keys);
            if (package.Manifest.Name != d.Name || package.Manifest.Version != d.Version)
            {
                throw new InvalidDataException($"the package is {package.Manifest.Name}@{package.Manifest.Version}, not {d.Name}@{d.Version}");
            }
        }
        finally
        {
            foreach (var k in keys) k.Dispose();
        }
    }

    /// <summary>A package staged earlier (before a restart, or for the same model without activation) is verified again, not downloaded again.</summary>
    private async Task<bool> StagedAlreadyAsync(DesiredModel d, CancellationToken ct)
    {
        if (!File.Exists(StagedPath) || new FileInfo(StagedPath).Length != d.SizeBytes) return false;
        if (await HashAsync(StagedPath, ct).ConfigureAwait(false) != d.Sha256) return false;
        Verify(d, StagedPath);
        return true;
    }

    private static async Task<string> HashAsync(string path, CancellationToken ct)
    {
        await using var f = File.OpenRead(path);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(f, ct).ConfigureAwait(false));
    }

    /// <summary>Runs the staged model beside the active one for the soak period, reporting the figures every few seconds.</summary>
    private async Task<ShadowFigures> ShadowAsync(DesiredModel d, CancellationToken ct)
    {
        ShadowRun shadow;
        try
        {
            shadow = new ShadowRun(ModelRunner.Load(ModelPackage.Open(StagedPath), context.Inference, logger), Running);
        }
        catch (Exception e) when (e is ModelPackageException or InvalidDataException or Microsoft.ML.OnnxRuntime.OnnxRuntimeException)
        {
            throw new InvalidDataException($"cannot run in shadow: {e.Message}", e);
        }

        using (shadow)
        {
            LogShadow(logger, d.Name, d.Version, d.ShadowSeconds);
            context.AttachShadow(shadow);
            try
            {
                var until = time.GetTimestamp();
                await Report("shadow", d, shadow: shadow.Figures(done: false)).ConfigureAwait(false);
                while (time.GetElapsedTime(until) < TimeSpan.FromSeconds(d.ShadowSeconds))
                {
                    var left = TimeSpan.FromSeconds(d.ShadowSeconds) - time.GetElapsedTime(until);
                    await Task.Delay(left < TimeSpan.FromSeconds(2) ? left : TimeSpan.FromSeconds(2), time, ct).ConfigureAwait(false);
                    await Report("shadow", d, shadow: shadow.Figures(done: false)).ConfigureAwait(false);
                }
            }
            finally
            {
                context.AttachShadow(null);
            }

            var figures = shadow.Figures(done: true);
            LogShadowDone(logger, d.Name, d.Version, figures.Runs, figures.Agreement, figures.LatencyRatio, figures.Errors);
            await Report("shadow", d, shadow: figures).ConfigureAwait(false);
            return figures;
        }
    }

    /// <summary>
    /// The package's address: <see cref="DesiredModel.Url"/> resolved against the hub, and refused — before any request
    /// is made — unless it stays on the hub's origin (scheme, host, port): the device's credentials go nowhere else.
    /// </summary>
    public static Uri PackageUrl(string hubUrl, string desiredUrl)
    {
        var origin = new Uri(hubUrl);
        if (!Uri.TryCreate(origin, desiredUrl, out var url) || url.Scheme != origin.Scheme || !string.Equals(url.Host, origin.Host, StringComparison.OrdinalIgnoreCase)
            || url.Port != origin.Port || url.UserInfo.Length > 0)
        {
            throw new InvalidDataException($"refused: the package URL '{desiredUrl}' is not on the hub's origin {origin.GetLeftPart(UriPartial.Authority)}; no request was made");
        }

        return url;
    }

    /// <summary>
    /// Downloads into <paramref name="part"/>, resuming from its length; retries network errors with backoff. The body
    /// is cut at the announced size (more is refused), and a resumed response must say it starts where the file ends.
    /// </summary>
    private async Task DownloadAsync(DesiredModel d, string part, CancellationToken ct)
    {
        var url = PackageUrl(hub.HubUrl!, d.Url);
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

                if ((int)response.StatusCode is >= 300 and < 400)
                {
                    // Not followed, not retried: the package comes from the hub's origin or not at all.
                    throw new InvalidDataException($"the hub answered the download with a redirect ({(int)response.StatusCode}) to '{response.Headers.Location}'; redirects are not followed");
                }

                response.EnsureSuccessStatusCode();
                var append = response.StatusCode == HttpStatusCode.PartialContent;
                if (append && (response.Content.Headers.ContentRange is not { From: { } from, HasLength: true } range || from != have || range.Length != d.SizeBytes))
                {
                    File.Delete(part); // what the hub resumed is not what the file holds: start over next time
                    throw new InvalidDataException($"the hub resumed the download with Content-Range '{response.Content.Headers.ContentRange}', not bytes {have}-/{d.SizeBytes}");
                }

                await using var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
                await using var file = new FileStream(part, append ? FileMode.Append : FileMode.Create, FileAccess.Write);
                var written = append ? have : 0;
                var buffer = new byte[4096];
                int n;
                while ((n = await body.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                {
                    if (written + n > d.SizeBytes)
                    {
                        file.Close();
                        File.Delete(part);
                        throw new InvalidDataException($"the hub sent more than the announced {d.SizeBytes} bytes; download refused");
                    }

                    written += n;
                    await file.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                    if (CrashPoint is not null)
                    {
                        await file.FlushAsync(ct).ConfigureAwait(false);
                        CrashPoint("download-chunk"); // a power loss in the middle of the download (tests)
                    }
                }

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

    [LoggerMessage(EventId = 1503, Level = LogLevel.Information, Message = "Shadow run of {Name}@{Version} for {Seconds} s beside the active model")]
    private static partial void LogShadow(ILogger logger, string name, string version, int seconds);

    [LoggerMessage(EventId = 1504, Level = LogLevel.Information, Message = "Shadow run of {Name}@{Version} done: {Runs} windows, agreement {Agreement:P1}, latency ratio {Ratio:0.00}, {Errors} errors")]
    private static partial void LogShadowDone(ILogger logger, string name, string version, long runs, double agreement, double ratio, long errors);

    [LoggerMessage(EventId = 1505, Level = LogLevel.Warning, Message = "Activated {Name}@{Version} in slot {Slot}; restarting on it")]
    private static partial void LogActivated(ILogger logger, string name, string version, string slot);

    [LoggerMessage(EventId = 1506, Level = LogLevel.Warning, Message = "The hub asks for {Name}@{Version}, the model in the other slot: switching back")]
    private static partial void LogSwitchBack(ILogger logger, string name, string version);

    [LoggerMessage(EventId = 1502, Level = LogLevel.Warning, Message = "Download of {Name}@{Version} interrupted (attempt {Attempt}), resuming: {Error}")]
    private static partial void LogRetry(ILogger logger, string name, string version, int attempt, string error);
}
