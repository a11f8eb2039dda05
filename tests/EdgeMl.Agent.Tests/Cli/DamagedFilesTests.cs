using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Cli;

/// <summary>
/// What a power loss or a failing SD card leaves of the agent's local files — zero length, truncated, a flipped byte —
/// in agent.db, identity.json, the slot state and health.json: the agent names the file in one line (or, for the
/// outbox, moves it aside and starts a fresh one with an alert), and <c>status</c> never shows a stack trace.
/// </summary>
public sealed class DamagedFilesTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string> Damages => ["zero-length", "truncated", "byte-flipped"];

    private static void Damage(string path, string how)
    {
        var bytes = File.ReadAllBytes(path);
        switch (how)
        {
            case "zero-length": bytes = []; break;
            case "truncated": bytes = bytes[..(bytes.Length / 2)]; break;
            default:
                // A flipped byte where it matters: a JSON file's middle (no longer UTF-8), a LiteDB file's header page.
                var at = path.EndsWith(".db", StringComparison.Ordinal) ? 40 : bytes.Length / 2;
                bytes[at] ^= 0xFF;
                break;
        }

        File.WriteAllBytes(path, bytes);
    }

    private string[] Run(int count = 20, bool fast = true) =>
        ["run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", count.ToString(System.Globalization.CultureInfo.InvariantCulture),
         fast ? "--fast" : "--Agent:Pipeline:Realtime=true", "--quiet", "--health-every", "1", "--data", _dir.Path];

    private static void NoStackTrace(string output) => Assert.DoesNotMatch(@"\n\s+at [\w.]+[.(]", output);

    private (int Code, string Out) Status()
    {
        var (code, stdout, stderr) = AgentProcess.Agent("status", "--data", _dir.Path);
        NoStackTrace(stdout + stderr);
        return (code, stdout + stderr);
    }

    [Theory]
    [MemberData(nameof(Damages))]
    public void A_damaged_outbox_is_moved_aside_a_fresh_one_started_and_an_alert_says_so(string how)
    {
        Assert.Equal(0, AgentProcess.Agent(Run()).ExitCode);
        var db = Hosting.AgentRuntime.DeviceOutboxPath(_dir.Path);
        // The agent checkpointed its log into the data file when it stopped; only agent.db is damaged.
        Damage(db, how);
        Assert.True(Status().Code == 0);

        var (code, _, stderr) = AgentProcess.Agent(Run(5));
        NoStackTrace(stderr);
        Assert.True(code == 0, stderr);
        var aside = Directory.GetFiles(_dir.Path, "agent.db.corrupt-*");
        var (_, status) = Status();
        if (how == "zero-length")
        {
            // What some file systems leave after a power loss: LiteDB starts a new outbox in it, nothing to keep.
            Assert.Empty(aside);
        }
        else
        {
            Assert.Single(aside);
            Assert.Contains("moved aside", stderr, StringComparison.Ordinal);
            Assert.Matches(@"alert\s+1\s", status);
        }

        Assert.Matches(@"telemetry\s+5\s", status);
    }

    [Theory]
    [MemberData(nameof(Damages))]
    public void A_damaged_identity_is_one_line_naming_the_file_for_run_and_a_problem_line_in_status(string how)
    {
        var path = Path.Combine(_dir.Path, "identity.json");
        File.WriteAllText(path, """{"deviceId":"saw-1","broker":"mqtt://127.0.0.1:1883","password":"secret-secret-secret","hub":"http://127.0.0.1:8080","enrolledAt":"2026-11-01T00:00:00Z"}""");
        Damage(path, how);

        var (code, stdout, stderr) = AgentProcess.Agent(Run());
        NoStackTrace(stdout + stderr);
        Assert.Equal(1, code);
        Assert.StartsWith("error: ", stderr, StringComparison.Ordinal);
        Assert.Contains(path, stderr, StringComparison.Ordinal);
        Assert.Single(stderr.Trim().Split('\n'));

        var (sc, status) = Status();
        Assert.Equal(0, sc);
        Assert.Single(status.Split('\n'), l => l.StartsWith("problem    ", StringComparison.Ordinal) && l.Contains(path, StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Damages))]
    public void A_damaged_slot_state_is_one_line_naming_the_file(string how)
    {
        Assert.Equal(0, AgentProcess.Agent(Run()).ExitCode);
        var path = Path.Combine(_dir.Path, "slots", "slots.json");
        Assert.True(File.Exists(path));
        Damage(path, how);

        var (code, stdout, stderr) = AgentProcess.Agent(Run());
        NoStackTrace(stdout + stderr);
        Assert.Equal(1, code);
        Assert.Contains(path, stderr, StringComparison.Ordinal);
        Assert.Single(stderr.Trim().Split('\n'), l => l.StartsWith("error:", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Damages))]
    public void A_partial_health_report_is_a_problem_line_in_status_and_the_rest_is_shown(string how)
    {
        Assert.Equal(0, AgentProcess.Agent(Run(12, fast: false)).ExitCode); // real time: 1.5 s, a health report a second
        var path = Hosting.AgentRuntime.HealthPath(_dir.Path);
        Assert.True(File.Exists(path));
        Damage(path, how);

        var (code, status) = Status();
        Assert.Equal(0, code);
        Assert.Contains($"problem    {path}: not a health report", status, StringComparison.Ordinal);
        Assert.Matches(@"telemetry\s+12\s", status);
    }
}
