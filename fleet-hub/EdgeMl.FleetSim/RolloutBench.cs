using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.FleetSim;

/// <summary>
/// <c>./build.sh bench rollout</c>: a hub and 1,000 simulated devices (real MQTT connections with enrolled
/// credentials, real HTTP range downloads from the hub, SHA-256 checked as it streams). A signed 5 MB package is
/// pushed and rolled out with gates off (one wave); the clock runs from the push until the rollout is completed (all
/// active and confirmed). Bytes per device / package size, once uninterrupted and once with every download cut at a
/// random point and resumed with a Range request. The simulated devices do not run the model (the agent's own
/// update path is what the rollout tests exercise); the "model" inside the package is 5 MB of random bytes.
/// </summary>
public static class RolloutBench
{
    public static async Task<int> RunAsync(Dictionary<string, string> o, CancellationToken ct)
    {
        var hubDll = FleetSimProgram.Need(o, "hub-dll");
        var template = FleetSimProgram.Need(o, "model");
        var outPath = o.GetValueOrDefault("out", "bench-results/rollout.json");
        var devices = FleetSimProgram.Int(o, "devices", 1000);
        var packageSize = o.TryGetValue("size", out var sizeText) && EdgeMl.Protocol.Text.Sizes.TryParse(sizeText, out var bytes, out _) ? bytes : 5L << 20;
        if (packageSize is < 1 or > int.MaxValue) throw new EdgeMl.CommandLine.UsageException($"--size {sizeText}: from 1 byte to 2 GiB");

        var work = Directory.CreateTempSubdirectory("edgeml-rollout-bench-");
        var mqtt = Loopback.FreePort();
        var http = Loopback.FreePort();
        var hubUrl = new Uri($"http://127.0.0.1:{http}");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var pub = Path.Combine(work.FullName, "ops.pub");
        await File.WriteAllTextAsync(pub, key.ExportSubjectPublicKeyInfoPem(), ct).ConfigureAwait(false);

        var packages = new Dictionary<string, string>();
        foreach (var version in new[] { "2.0.0", "3.0.0" })
        {
            var manifest = ModelPackage.Open(template).Manifest;
            manifest.Version = version;
            var model = RandomNumberGenerator.GetBytes((int)packageSize);
            manifest.Model.File = ModelPackage.ModelEntryName;
            manifest.Model.Sha256 = ModelPackage.Sha256Hex(model);
            manifest.Model.SizeBytes = model.LongLength;
            var manifestBytes = ModelPackage.SerializeManifest(manifest);
            var path = Path.Combine(work.FullName, $"bench-{version}.edgepkg");
            ModelPackage.WriteRaw(path, manifestBytes, model, PackageSignature.Sign(manifestBytes, key));
            packages[version] = path;
        }

        Step($"starting a hub; enrolling and connecting {devices} simulated devices");
        using var hub = HubProcess.Start(hubDll, Path.Combine(work.FullName, "hub"), mqtt, hubUrl, "--TrustedKeys:0", pub, "--RolloutTickMs", "250");
        var token = await HubProcess.WaitAsync(Path.Combine(work.FullName, "hub"), hubUrl, ct).ConfigureAwait(false);
        using var api = new HttpClient { BaseAddress = hubUrl, Timeout = TimeSpan.FromMinutes(5) };
        api.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var downloads = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256 }) { BaseAddress = hubUrl, Timeout = TimeSpan.FromMinutes(10) };
        var results = new JsonObject();
        var rows = new List<(string Key, string Figure, string Target, string Note)>();
        await using (var fleet = new Fleet(hubUrl, token, new Uri($"mqtt://127.0.0.1:{mqtt}")))
        {
            await fleet.EnrollAsync("bench-", devices, 32, ct).ConfigureAwait(false);
            await fleet.ConnectAsync(64, ct).ConfigureAwait(false);
            var sims = fleet.Devices.Select(d => new SimUpdate(d, downloads)).ToList();
            foreach (var s in sims) await s.StartAsync(ct).ConfigureAwait(false);

            foreach (var (version, cut) in new[] { ("2.0.0", false), ("3.0.0", true) })
            {
                foreach (var s in sims) s.Reset(cut);
                var size = new FileInfo(packages[version]).Length;
                Step($"rollout of {version} ({size / 1e6:0.0} MB) to {devices} devices, gates off{(cut ? ", every download cut once at a random point" : "")}");
                var clock = Stopwatch.StartNew();
                using (var content = new StreamContent(File.OpenRead(packages[version])))
                {
                    using var push = await api.PostAsync("/api/models", content, ct).ConfigureAwait(false);
                    if (!push.IsSuccessStatusCode) throw new InvalidOperationException($"push: {await push.Content.ReadAsStringAsync(ct).ConfigureAwait(false)}");
                }

                using var start = await api.PostAsJsonAsync("/api/rollouts", new { model = $"vibration-fault@{version}", group = "bench", waves = "100", watch = "0s" }, ct).ConfigureAwait(false);
                var rollout = await start.Content.ReadFromJsonAsync<JsonElement>(ct).ConfigureAwait(false);
                if (!start.IsSuccessStatusCode) throw new InvalidOperationException($"rollout: {rollout}");
                var id = rollout.GetProperty("id").GetString();
                string state;
                while (true)
                {
                    await Task.Delay(200, ct).ConfigureAwait(false);
                    var r = await api.GetFromJsonAsync<JsonElement>($"/api/rollouts/{id}", ct).ConfigureAwait(false);
                    state = r.GetProperty("state").GetString()!;
                    if (state != "running") break;
                    if (clock.Elapsed > TimeSpan.FromMinutes(10)) throw new TimeoutException($"rollout {id} still running after 10 min");
                }

                var seconds = clock.Elapsed.TotalSeconds;
                var active = sims.Count(s => s.Active == version);
                var ratios = sims.Select(s => (double)s.BytesReceived / size).Order().ToList();
                var mean = ratios.Average();
                var failures = sims.Sum(s => s.Failures);
                if (state != "completed" || active != devices) throw new InvalidOperationException($"rollout {id} ended {state} with {active}/{devices} active, {failures} failures");
                if (!cut)
                {
                    results["rollout_1000_s"] = Math.Round(seconds, 2);
                    results["bytes_ratio_clean"] = Math.Round(mean, 4);
                    rows.Add(("rollout_1000_s", $"{seconds:0.0}", "≤ 60", $"{devices} devices, {size / 1e6:0.0} MB package: push → all active and confirmed"));
                    rows.Add(("bytes_ratio_clean", $"{mean:0.0000}", "≤ 1.02", $"max {ratios[^1]:0.0000}; the hub's HTTP headers are not counted"));
                }
                else
                {
                    results["rollout_1000_cut_s"] = Math.Round(seconds, 2);
                    results["bytes_ratio_cut"] = Math.Round(mean, 4);
                    results["downloads_cut"] = sims.Sum(s => s.Cuts);
                    rows.Add(("bytes_ratio_cut", $"{mean:0.0000}", "≤ 1.10", $"max {ratios[^1]:0.0000}; {sims.Sum(s => s.Cuts)} cuts, each resumed with a Range request; rollout {seconds:0.0} s"));
                }
            }
        }

        hub.Kill(entireProcessTree: true);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
        await File.WriteAllTextAsync(outPath, results.ToJsonString(new JsonSerializerOptions { WriteIndented = true }), ct).ConfigureAwait(false);
        Console.WriteLine();
        Console.WriteLine($"{"key",-20} {"figure",10} {"target",8}  note");
        foreach (var (k, f, t, n) in rows) Console.WriteLine($"{k,-20} {f,10} {t,8}  {n}");
        Console.WriteLine($"\nwritten to {outPath}");
        try
        {
            work.Delete(recursive: true);
        }
        catch (IOException)
        {
        }

        return 0;
    }

    private static void Step(string what) => Console.WriteLine($"==> {what}");

    /// <summary>The update protocol of one simulated device: follow the desired state, download (resuming), verify, report.</summary>
    private sealed class SimUpdate(SimDevice device, HttpClient http)
    {
        private readonly Lock _gate = new();
        private string? _target;
        private bool _cut;

        public long BytesReceived;
        public int Cuts;
        public int Failures;
        public string? Active;

        public void Reset(bool cut)
        {
            BytesReceived = 0;
            _cut = cut;
        }

        public Task StartAsync(CancellationToken ct) => device.FollowDesiredAsync(OnDesiredAsync, ct);

        private async Task OnDesiredAsync(DesiredModel d)
        {
            lock (_gate)
            {
                if (_target == d.Version || d.Version == Active) return;
                _target = d.Version;
            }

            var report = new ReportedState { Name = d.Name, Version = d.Version, Active = Active is null ? null : $"{d.Name}@{Active}", Rollout = d.Rollout };
            try
            {
                report.Phase = "downloading";
                report.At = DateTimeOffset.UtcNow;
                await device.ReportAsync(report, CancellationToken.None).ConfigureAwait(false);
                using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                long have = 0;
                var cutAt = _cut ? Random.Shared.NextInt64(1, d.SizeBytes) : long.MaxValue;
                var buffer = new byte[64 * 1024];
                while (have < d.SizeBytes)
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, d.Url);
                    request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{device.Id}:{device.Password}")));
                    if (have > 0) request.Headers.Range = new RangeHeaderValue(have, null);
                    using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).ConfigureAwait(false);
                    response.EnsureSuccessStatusCode();
                    if (have > 0 && response.StatusCode != HttpStatusCode.PartialContent) throw new InvalidOperationException("the hub ignored the Range request");
                    await using var body = await response.Content.ReadAsStreamAsync().ConfigureAwait(false);
                    int n;
                    while ((n = await body.ReadAsync(buffer).ConfigureAwait(false)) > 0)
                    {
                        Interlocked.Add(ref BytesReceived, n);
                        sha.AppendData(buffer, 0, n);
                        have += n;
                        if (have >= cutAt)
                        {
                            cutAt = long.MaxValue;
                            Interlocked.Increment(ref Cuts);
                            break; // the connection drops here; what arrived is kept, the rest is asked for with a Range
                        }
                    }
                }

                var hex = Convert.ToHexStringLower(sha.GetHashAndReset());
                if (hex != d.Sha256) throw new InvalidDataException($"SHA-256 mismatch after {have} bytes");
                Active = d.Version;
                report.Phase = "active";
                report.Active = $"{d.Name}@{d.Version}";
                report.Confirmed = true;
                report.At = DateTimeOffset.UtcNow;
                await device.ReportAsync(report, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is HttpRequestException or IOException or InvalidOperationException or InvalidDataException or TaskCanceledException)
            {
                Interlocked.Increment(ref Failures);
                lock (_gate) _target = null;
                report.Phase = "failed";
                report.Reason = e.Message;
                report.At = DateTimeOffset.UtcNow;
                await device.ReportAsync(report, CancellationToken.None).ConfigureAwait(false);
            }
        }
    }
}
