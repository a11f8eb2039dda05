using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// A real hub process (embedded broker, or a client of an external broker), the operator's API client, and
/// the programs people run against it — <c>edgeml-agent</c> and <c>edgeml</c> — as separate processes.
/// </summary>
public sealed class HubHarness : IDisposable
{
    private readonly ManualResetEventSlim _subscribed = new();
    private readonly HashSet<string> _enrolled = [];
    /// <summary>What was started, by id and start time: a test's <c>using var agent</c> disposes the Process object (which
    /// does not end the program), so the harness finds each program again by its id to end it.</summary>
    private readonly List<(int Id, DateTime Started)> _started = [];
    private Process? _hub;

    public HubHarness()
    {
        Api.BaseAddress = new Uri($"http://127.0.0.1:{Http}");
    }

    public TempDirectory Dir { get; } = new();
    public int Mqtt { get; } = Mosquitto.FreePort();
    public int Http { get; } = Mosquitto.FreePort();
    public string HubUrl => $"{_scheme}://127.0.0.1:{Http}";

    private string _scheme = "http";
    private string[] _https = [];

    /// <summary>The API over HTTPS with a certificate (PEM) issued by <paramref name="caPath"/>; the harness's client trusts that CA.</summary>
    public void UseHttps(string cert, string key, string caPath)
    {
        _scheme = "https";
        _https = ["--Kestrel:Certificates:Default:Path", cert, "--Kestrel:Certificates:Default:KeyPath", key];
        var anchors = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
        anchors.ImportFromPemFile(caPath);
        Api.Dispose();
        Api = new HttpClient(new HttpClientHandler
        {
            ServerCertificateCustomValidationCallback = (_, c, _, errors) => EdgeMl.Agent.Sync.BrokerTls.Validate(c, errors, anchors),
        }) { BaseAddress = new Uri(HubUrl) };
    }
    public string HubData => Path.Combine(Dir.Path, "hub");

    /// <summary>The hub's REST API with the operator token the hub wrote on first start.</summary>
    public HttpClient Api { get; private set; } = new();

    public string OperatorToken { get; private set; } = "";

    /// <summary>Where agents connect: the embedded broker, or the external one the hub was started with.</summary>
    public string AgentBroker { get; private set; } = "";

    public bool External { get; private set; }

    /// <param name="extra">More hub options; a repeated option wins over the harness's (configuration: last one counts).</param>
    public void StartHub(string? externalBroker = null, params string[] extra)
    {
        var args = new List<string> { "--Data", HubData, "--MqttPort", Str(Mqtt), "--urls", HubUrl };
        args.AddRange(_https);
        if (externalBroker is not null) args.AddRange(["--Broker", externalBroker]);
        args.AddRange(extra);
        External = externalBroker is not null;
        AgentBroker = externalBroker ?? $"mqtt://127.0.0.1:{Mqtt}";
        _subscribed.Reset();
        _hub = Start(Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll"), args, line =>
        {
            HubLog.Enqueue(line);
            // Logged after the hub subscribed at the external broker.
            if (line.Contains("Connected to external broker", StringComparison.Ordinal)) _subscribed.Set();
        });
        var tokenFile = Path.Combine(HubData, "operator.token");
        // Replicas on one shared store take the same --OperatorToken (the first one's bootstrap file is in its own data directory).
        var configuredAt = Array.IndexOf(extra, "--OperatorToken");
        var configured = configuredAt >= 0 && configuredAt + 1 < extra.Length ? extra[configuredAt + 1] : null;
        Until(() =>
        {
            if (configured is not null)
            {
                OperatorToken = configured;
            }
            else
            {
                // Read again on every try: the file may be seen before its contents are written.
                if (!File.Exists(tokenFile)) return false;
                OperatorToken = File.ReadAllText(tokenFile).Trim();
                if (OperatorToken.Length < 10) return false;
            }

            Api.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", OperatorToken);
            return Try(() => Api.GetAsync("/api/devices").Result.IsSuccessStatusCode);
        }, "the hub to answer");
    }

    public bool WaitSubscribed(int timeoutMs) => _subscribed.Wait(timeoutMs);

    /// <summary>What the hub process wrote (stdout and stderr), line by line, since it was first started.</summary>
    public ConcurrentQueue<string> HubLog { get; } = new();

    /// <summary>SIGTERM, as Ctrl-C or <c>systemctl stop</c> does; waits up to 20 s for the hub to exit (then kill -9).</summary>
    /// <returns>The hub's exit code (-1 when it had to be killed).</returns>
    public int StopHub()
    {
        using (var kill = Process.Start("/bin/kill", ["-TERM", _hub!.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            kill.WaitForExit();
        var code = _hub.WaitForExit(20_000) ? _hub.ExitCode : -1;
        if (code == -1) _hub.Kill();
        _hub.WaitForExit();
        _hub.Dispose();
        _hub = null;
        return code;
    }

    public void KillHub()
    {
        _hub!.Kill(); // kill -9
        _hub.WaitForExit();
        _hub.Dispose();
        _hub = null;
    }

    /// <summary>The operator registers the device (REST, as <c>edgeml devices enroll</c> does) and gets its one-time token.</summary>
    public string Register(string device, string? group = null, Dictionary<string, string>? tags = null)
    {
        var response = Api.PostAsJsonAsync("/api/devices", new { id = device, group, tags }).Result;
        Assert.True(response.IsSuccessStatusCode, $"registering {device}: {(int)response.StatusCode} {response.Content.ReadAsStringAsync().Result}");
        return Json(response).GetProperty("token").GetString()!;
    }

    /// <summary>Register, then <c>edgeml-agent enroll</c> on the "device" with the token, as an engineer would.</summary>
    public void Enroll(string device, string? group = null)
    {
        var token = Register(device, group);
        var (code, _, err) = Run(AgentDll, "enroll", "--hub", $"127.0.0.1:{Http}", "--token", token, "--data", AgentData(device));
        Assert.True(code == 0, $"edgeml-agent enroll {device}: {err}");
        _enrolled.Add(device);
    }

    public string AgentData(string device) => Path.Combine(Dir.Path, device);

    /// <summary>The broker password an enrolled device keeps in its <c>identity.json</c> (for third-party clients acting as it).</summary>
    public string DevicePassword(string device) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AgentData(device), "identity.json"))).RootElement.GetProperty("password").GetString()!;

    /// <summary>The bundled package as another version (labels reversed: one that disagrees), signed with <c>edgeml model sign --key</c>.</summary>
    public string SignedVariant(string version, string key, bool reverseLabels = false)
    {
        var path = TestPackages.Variant(Path.Combine(Dir.Path, "pkgs"), version, reverseLabels);
        var (code, _, err) = Run(CliDll, "model", "sign", path, "--key", key);
        Assert.True(code == 0, $"edgeml model sign {path}: {err}");
        return path;
    }

    /// <summary>
    /// An agent process on the simulated machine. With the embedded broker it is enrolled first and finds its
    /// hub through its identity; with an external broker it is pointed at it (that broker's own ACLs apply).
    /// </summary>
    public Process Agent(string device, int count, bool fast, int healthEvery = 0, string[]? extra = null, Action<string>? onLine = null,
        IReadOnlyDictionary<string, string>? env = null)
    {
        var args = new List<string>
        {
            "run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", Str(count), "--quiet",
            "--data", AgentData(device), "--Agent:Hub:ReconnectMinMs=50", "--Agent:Hub:ReconnectMaxMs=500",
            fast ? "--fast" : "--Agent:Pipeline:Realtime=true", "--health-every", Str(healthEvery),
        };
        args.AddRange(extra ?? []);
        if (External)
        {
            args.AddRange(["--hub", AgentBroker, "--device", device]);
        }
        else if (!_enrolled.Contains(device))
        {
            Enroll(device);
        }

        return Start(AgentDll, args, onLine ?? (_ => { }), env);
    }

    public static string AgentDll => Path.Combine(AppContext.BaseDirectory, "edgeml-agent.dll");
    public static string CliDll => Path.Combine(AppContext.BaseDirectory, "edgeml.dll");

    public JsonElement Get(string path)
    {
        var response = Api.GetAsync(path).Result;
        Assert.True(response.IsSuccessStatusCode, $"GET {path}: {(int)response.StatusCode}");
        return Json(response);
    }

    public JsonElement Device(string id) => Get($"/api/devices/{id}");

    public long Records(string id)
    {
        var response = Api.GetAsync($"/api/devices/{id}").Result;
        return response.IsSuccessStatusCode ? Json(response).GetProperty("records").GetInt64() : 0;
    }

    public List<(string Boot, long Seq)> Stored(string id) =>
        Get($"/api/devices/{id}/telemetry?limit=10000").EnumerateArray()
            .Select(r => (r.GetProperty("boot").GetString()!, r.GetProperty("seq").GetInt64())).ToList();

    /// <summary>
    /// Three simulated devices (<c>edgeml-fleetsim run</c>, <paramref name="prefix"/>00000 …) enrolled through this hub and
    /// sending through <paramref name="broker"/> telemetry (5 records every 0.2 s) and health (every 1 s) for
    /// <paramref name="seconds"/>; when they stop, what the broker acknowledged goes to <paramref name="report"/>.
    /// </summary>
    public Process StartSimulator(string broker, string token, string prefix, int seconds, string report, ConcurrentQueue<string> output) =>
        Start(Path.Combine(AppContext.BaseDirectory, "edgeml-fleetsim.dll"),
            ["run", "--hub", HubUrl, "--token", token, "--broker", broker, "--devices", "3", "--prefix", prefix, "--telemetry-every", "0.2",
             "--batch", "5", "--health-every", "1", "--duration", Str(seconds), "--report", report], output.Enqueue);

    /// <summary>
    /// The simulator's <c>--report</c> against the store, read through each of <paramref name="hubs"/>: every simulated
    /// device's telemetry and health are seq 1..N of what the broker acknowledged, each stored once.
    /// </summary>
    public static async Task AssertSimulatedRecordsStoredOnceAsync(string report, params HubHarness[] hubs)
    {
        var acked = JsonDocument.Parse(await File.ReadAllTextAsync(report)).RootElement;
        Assert.Equal(3, acked.EnumerateObject().Count());
        foreach (var device in acked.EnumerateObject())
        {
            foreach (var (recordClass, path) in new[] { ("telemetry", "telemetry?limit=10000"), ("health", "records?class=health&limit=10000") })
            {
                var produced = device.Value.GetProperty(recordClass).GetInt64();
                Assert.True(produced > (recordClass == "telemetry" ? 100 : 5), $"{device.Name} produced only {produced} {recordClass} records");
                List<long> Seqs(HubHarness h) => h.Get($"/api/devices/{device.Name}/{path}").EnumerateArray().Select(r => r.GetProperty("seq").GetInt64()).Order().ToList();
                Until(() => Seqs(hubs[0]).Count >= produced, $"{device.Name}'s {produced} {recordClass} records (have {Seqs(hubs[0]).Count})", 30_000);
                foreach (var h in hubs) Assert.Equal(Enumerable.Range(1, (int)produced).Select(i => (long)i), Seqs(h));
            }
        }
    }

    public static JsonElement Json(HttpResponseMessage response) => JsonDocument.Parse(response.Content.ReadAsStringAsync().Result).RootElement.Clone();

    /// <summary>Runs a program to its end: (exit code, stdout, stderr).</summary>
    public static (int Code, string Out, string Err) Run(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program.EndsWith(".dll", StringComparison.Ordinal) ? "dotnet" : program)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        if (program.EndsWith(".dll", StringComparison.Ordinal)) psi.ArgumentList.Add(program);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true); // a program that hangs must not outlive the test
            Assert.Fail($"{program} {string.Join(' ', args)} did not finish in 60 s");
        }

        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Starts a program (a .dll through the dotnet host); whatever is still running when the test ends is killed.</summary>
    public Process Start(string dll, IEnumerable<string> args, Action<string> onLine, IReadOnlyDictionary<string, string>? env = null)
    {
        var p = StartProcess(dll, args, onLine, env);
        lock (_started) _started.Add((p.Id, p.StartTime));
        return p;
    }

    private static Process StartProcess(string dll, IEnumerable<string> args, Action<string> onLine, IReadOnlyDictionary<string, string>? env)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) onLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) onLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    public static void Until(Func<bool> condition, string what, int timeoutMs = 30_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline) Assert.Fail($"timed out waiting for {what}");
            Thread.Sleep(50);
        }
    }

    private static bool Try(Func<bool> f)
    {
        try
        {
            return f();
        }
        catch (AggregateException)
        {
            return false;
        }
    }

    public static string Str(long v) => v.ToString(CultureInfo.InvariantCulture);

    public void Dispose()
    {
        lock (_started)
        {
            foreach (var (id, started) in _started)
            {
                try
                {
                    // A test that failed half-way, or disposed its Process object, leaves no agent behind.
                    using var p = Process.GetProcessById(id);
                    if (p.StartTime == started && !p.HasExited) p.Kill(entireProcessTree: true);
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
                {
                    // Gone already.
                }
            }
        }

        if (_hub is not null) KillHub();
        Api.Dispose();
        _subscribed.Dispose();
        Dir.Dispose();
    }
}
