using System.Diagnostics;
using System.Net;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Mqtt;
using EdgeMl.TestUtilities.Prometheus;

namespace EdgeMl.Agent.Tests.Cli;

/// <summary>
/// <c>Agent:Metrics:Port</c> on the native AOT agent (what ships): a Prometheus endpoint on loopback whose counters
/// follow the running pipeline. Like <see cref="PublishedBinaryTests"/>, it needs <c>./build.sh publish linux-x64</c>
/// (<c>./build.sh test</c> does that and does not let it skip).
/// </summary>
public sealed class MetricsEndpointTests : IDisposable
{
    private static readonly string X64 = Path.Combine(TestPackages.RepositoryRoot, "artifacts", "publish", "linux-x64", "edgeml-agent");
    private readonly TempDirectory _dir = new();
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };
    private Process? _agent;

    private Process StartNative(params string[] args)
    {
        var psi = new ProcessStartInfo(X64) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    /// <summary>The endpoint's text, or null while it does not answer yet.</summary>
    private string? TryScrape(int port)
    {
        try
        {
            var response = _http.GetAsync($"http://127.0.0.1:{port}/metrics").Result;
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return response.Content.ReadAsStringAsync().Result;
        }
        catch (AggregateException e) when (e.InnerException is HttpRequestException)
        {
            return null;
        }
    }

    /// <summary>Scrapes until <paramref name="condition"/> holds on a parsed scrape (each one must parse), failing if the agent exits or 60 s pass.</summary>
    private PrometheusText ScrapeUntil(int port, Func<PrometheusText, bool> condition, string what)
    {
        var deadline = Environment.TickCount64 + 60_000;
        while (true)
        {
            if (_agent!.HasExited) Assert.Fail($"the agent exited ({_agent.ExitCode}) while waiting for {what}");
            if (TryScrape(port) is { } text && PrometheusText.Parse(text) is var parsed && condition(parsed)) return parsed;
            Assert.True(Environment.TickCount64 < deadline, $"timed out waiting for {what}");
            _agent.WaitForExit(100); // wakes at once if the agent dies
        }
    }

    [SkippableFact]
    public void The_native_agent_serves_prometheus_metrics_whose_counters_follow_its_predictions()
    {
        if (Environment.GetEnvironmentVariable("EDGEML_REQUIRE_PUBLISHED") == "1") Assert.True(File.Exists(X64), $"{X64} is missing: ./build.sh publish did not run");
        Skip.IfNot(File.Exists(X64), $"{X64} not published (run ./build.sh publish linux-x64)");
        var port = Mosquitto.FreePort();
        _agent = StartNative("run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--data", _dir.Path, "--quiet",
            "--results", Path.Combine(_dir.Path, "predictions.jsonl"), "--Agent:Pipeline:Realtime=true", $"--Agent:Metrics:Port={port}");

        var first = ScrapeUntil(port, m => m.Value("edgeml_agent_predictions_total") >= 2, "the first predictions");
        var later = ScrapeUntil(port, m => m.Value("edgeml_agent_predictions_total") >= first.Value("edgeml_agent_predictions_total") + 3, "more predictions");

        Assert.Equal("counter", later.Types["edgeml_agent_predictions_total"]);
        Assert.True(later.Value("edgeml_agent_sensor_samples_total") > first.Value("edgeml_agent_sensor_samples_total"), "samples grow");
        Assert.True(later.Value("edgeml_agent_windows_total") >= later.Value("edgeml_agent_predictions_total"), "every prediction had a window");
        // One latency observation per prediction (scraped together, so they agree), in seconds: far below a second here.
        Assert.Equal(later.Value("edgeml_agent_predictions_total"), later.Value("edgeml_agent_inference_duration_seconds_count"));
        Assert.Equal(later.Value("edgeml_agent_inference_duration_seconds_count"), later.Value("edgeml_agent_inference_duration_seconds_bucket", ("le", "1")));
        Assert.Equal(1, later.Value("edgeml_agent_model_info", ("model", "vibration-fault"), ("provider", "cpu")));
        // Every prediction goes into the outbox first: it counts them (no hub here, so they wait there).
        Assert.True(later.Value("edgeml_agent_outbox_records_stored_total") >= first.Value("edgeml_agent_predictions_total"));
        Assert.True(later.Value("edgeml_agent_outbox_records", ("class", "telemetry")) >= 1);
        Assert.Equal(0, later.Sum("edgeml_agent_outbox_records_dropped_total"));

        if (Promtool.Path is not null)
        {
            var (code, output) = Promtool.CheckMetrics(TryScrape(port)!);
            Assert.True(code == 0 && output.Trim().Length == 0, $"promtool check metrics: {output}");
        }

        // Bound to loopback only (the default Agent:Metrics:Address): nothing else on this port.
        Assert.Equal(HttpStatusCode.NotFound, _http.GetAsync($"http://127.0.0.1:{port}/other").Result.StatusCode);
    }

    [Fact]
    public async Task The_metrics_port_serves_only_get_and_head_of_exactly_metrics_with_plain_text_refusals()
    {
        var port = Mosquitto.FreePort();
        _agent = AgentProcess.Start("run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--quiet",
            "--Agent:Pipeline:Realtime=true", $"--Agent:Metrics:Port={port}");
        var scrape = ScrapeUntil(port, m => m.Value("edgeml_agent_predictions_total") >= 1, "the first prediction");
        Assert.Equal("counter", scrape.Types["edgeml_agent_predictions_total"]);
        var url = $"http://127.0.0.1:{port}";
        using (var head = new HttpRequestMessage(HttpMethod.Head, $"{url}/metrics"))
        {
            var r = await _http.SendAsync(head);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Empty(await r.Content.ReadAsByteArrayAsync());
        }

        foreach (var method in new[] { HttpMethod.Post, HttpMethod.Put, HttpMethod.Delete })
        {
            using var request = new HttpRequestMessage(method, $"{url}/metrics");
            var r = await _http.SendAsync(request);
            Assert.Equal(HttpStatusCode.MethodNotAllowed, r.StatusCode);
            Assert.Equal("text/plain", r.Content.Headers.ContentType?.MediaType);
            Assert.Equal($"{method.Method} is not allowed: GET /metrics", (await r.Content.ReadAsStringAsync()).Trim());
        }

        foreach (var path in new[] { "/METRICS", "/Metrics", "/metrics/x", "/metrics/", "/", "/other" })
        {
            var r = await _http.GetAsync(url + path);
            Assert.True(r.StatusCode == HttpStatusCode.NotFound, $"{path}: {(int)r.StatusCode}");
            Assert.Equal("text/plain", r.Content.Headers.ContentType?.MediaType);
            Assert.Equal("not found: this port serves only GET /metrics", (await r.Content.ReadAsStringAsync()).Trim());
        }
    }

    [SkippableTheory]
    [InlineData("0.0.0.0")]
    [InlineData("::")]
    [InlineData("*")]
    public void Every_interface_as_the_docs_write_it_serves_metrics_on_loopback_too(string address)
    {
        if (Environment.GetEnvironmentVariable("EDGEML_REQUIRE_PUBLISHED") == "1") Assert.True(File.Exists(X64), $"{X64} is missing: ./build.sh publish did not run");
        Skip.IfNot(File.Exists(X64), $"{X64} not published (run ./build.sh publish linux-x64)");
        var port = Mosquitto.FreePort();
        _agent = StartNative("run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--data", _dir.Path, "--quiet",
            "--Agent:Pipeline:Realtime=true", $"--Agent:Metrics:Port={port}", $"--Agent:Metrics:Address={address}");
        var scrape = ScrapeUntil(port, m => m.Value("edgeml_agent_predictions_total") >= 1, $"a scrape with Agent:Metrics:Address={address}");
        Assert.Equal("counter", scrape.Types["edgeml_agent_predictions_total"]);
    }

    [Theory]
    [InlineData("--Agent:Metrics:Port=70000", "Agent:Metrics:Port")]
    [InlineData("--Agent:Metrics:Address=localhost", "Agent:Metrics:Address")]
    [InlineData("--Agent:Metrics:Address=::1", "Agent:Metrics:Address")]
    public void A_bad_metrics_setting_is_refused_naming_the_key(string setting, string key)
    {
        var (code, _, err) = AgentProcess.Agent("run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", "1", setting);
        Assert.NotEqual(0, code);
        Assert.Contains(key, err, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", err, StringComparison.Ordinal);
    }

    public void Dispose()
    {
        if (_agent is { HasExited: false })
        {
            _agent.Kill(entireProcessTree: true);
            _agent.WaitForExit();
        }

        _agent?.Dispose();
        _http.Dispose();
        _dir.Dispose();
    }
}
