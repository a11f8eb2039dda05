using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Cli;

/// <summary>
/// The published native agent under Debian's <c>faketime</c> (libfaketime through LD_PRELOAD: it replaces
/// <c>clock_gettime</c> and friends, which a native AOT binary calls like any C program). Only the wall clock is faked
/// (<c>FAKETIME_DONT_FAKE_MONOTONIC=1</c>), as on a Raspberry Pi without a real-time clock: it boots years in the
/// past, then NTP sets the date and the wall clock jumps forward while the monotonic clock runs on.
/// </summary>
public class FaketimeTests
{
    private const string LibFaketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    private static readonly string X64 = Path.Combine(TestPackages.RepositoryRoot, "artifacts", "publish", "linux-x64", "edgeml-agent");

    [SkippableFact]
    public void A_wall_clock_jump_of_days_while_the_native_agent_runs_expires_none_of_its_backlog()
    {
        var required = Environment.GetEnvironmentVariable("EDGEML_REQUIRE_PUBLISHED") == "1";
        if (required)
        {
            Assert.True(File.Exists(X64), $"{X64} is missing: ./build.sh publish did not run");
            Assert.True(File.Exists(LibFaketime), $"{LibFaketime} is missing: ./build.sh test installs Debian's faketime");
        }

        Skip.IfNot(File.Exists(X64), $"{X64} not published (run ./build.sh test)");
        Skip.IfNot(File.Exists(LibFaketime), "Debian's faketime is not installed (./build.sh test installs it)");

        using var dir = new TempDirectory();
        var clock = dir.File("clock");
        var data = dir.File("data");
        var healthFile = Path.Combine(data, "health.json");
        File.WriteAllText(clock, "-2500d"); // the wall clock ~7 years behind (libfaketime re-reads this file: see below)

        var psi = new ProcessStartInfo(X64) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[]
                 {
                     "run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--data", data, "--health-every", "1",
                     "--Agent:Outbox:TtlHours=24", "--results", dir.File("predictions.jsonl"), "--quiet",
                 })
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["LD_PRELOAD"] = LibFaketime;
        psi.Environment["FAKETIME_TIMESTAMP_FILE"] = clock;
        psi.Environment["FAKETIME_NO_CACHE"] = "1"; // the file is read at every clock call: the jump takes effect at once
        psi.Environment["FAKETIME_DONT_FAKE_MONOTONIC"] = "1";
        using var agent = Process.Start(psi)!;
        var stderr = new System.Text.StringBuilder();
        agent.OutputDataReceived += (_, _) => { };
        agent.ErrorDataReceived += (_, e) => { lock (stderr) stderr.AppendLine(e.Data); };
        agent.BeginOutputReadLine();
        agent.BeginErrorReadLine();
        try
        {
            // A backlog stored in the past: no hub, so everything stays in the outbox.
            var before = WaitForHealth(agent, healthFile, h => Depth(h, "telemetry") >= 20, stderr);
            var realNow = DateTimeOffset.UtcNow;
            Assert.True(At(before) < realNow - TimeSpan.FromDays(2400), $"the agent's wall clock says {At(before):O}: faketime did not reach it");
            var stored = Depth(before, "telemetry");

            // NTP sets the date: the wall clock jumps 10 days forward, far past the 24-hour TTL of every stored record.
            File.WriteAllText(clock, "-2490d");
            var jumped = WaitForHealth(agent, healthFile, h => At(h) > At(before) + TimeSpan.FromDays(9.9), stderr);
            // Two more health reports after the jump: Expire ran at least twice on the jumped clock.
            var healthCount = Depth(jumped, "health");
            var after = WaitForHealth(agent, healthFile, h => Depth(h, "health") >= healthCount + 2, stderr);

            Assert.Equal(0, Expired(after, "telemetry"));
            Assert.Equal(0, Expired(after, "health"));
            Assert.True(Depth(after, "telemetry") >= stored, $"{Depth(after, "telemetry")} telemetry records waiting, {stored} before the jump");
        }
        finally
        {
            if (!agent.HasExited) agent.Kill(entireProcessTree: true);
            agent.WaitForExit();
        }

        // What `status` reads from the outbox file afterwards (with the real clock): the backlog is there, nothing expired.
        var (code, json, err) = AgentProcess.Exec(X64, null, ["status", "--data", data, "--json"]);
        Assert.True(code == 0, err);
        var outbox = JsonDocument.Parse(json).RootElement.GetProperty("outbox");
        Assert.True(outbox.GetProperty("depth").GetProperty("telemetry").GetInt64() >= 20);
        Assert.Equal(0, outbox.GetProperty("expired").GetProperty("telemetry").GetInt64());
    }

    /// <summary>Waits (up to 60 s) for a health report that satisfies <paramref name="done"/>; the agent writes one a second.</summary>
    private static JsonElement WaitForHealth(Process agent, string path, Func<JsonElement, bool> done, System.Text.StringBuilder stderr)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            Assert.False(agent.HasExited, $"the agent exited ({(agent.HasExited ? agent.ExitCode : 0)}): {stderr}");
            try
            {
                var h = JsonDocument.Parse(File.ReadAllBytes(path)).RootElement;
                if (done(h)) return h;
            }
            catch (Exception e) when (e is IOException or JsonException)
            {
                // Not written yet (it is replaced by a rename, never seen half-written).
            }

            Thread.Sleep(100);
        }

        Assert.Fail($"no health report as expected in 60 s; the last: {(File.Exists(path) ? File.ReadAllText(path) : "none")}; agent: {stderr}");
        return default;
    }

    private static DateTimeOffset At(JsonElement h) => DateTimeOffset.Parse(h.GetProperty("at").GetString()!, CultureInfo.InvariantCulture);

    private static long Depth(JsonElement h, string c) => h.GetProperty("outbox").GetProperty("depth").GetProperty(c).GetInt64();

    private static long Expired(JsonElement h, string c) => h.GetProperty("outbox").GetProperty("expired").GetProperty(c).GetInt64();
}
