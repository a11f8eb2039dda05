using System.Text.Json;
using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Cli;

/// <summary>
/// The native AOT binaries from <c>./build.sh publish</c>: what ships, and the arm64 build (run under
/// qemu-user) predicting what the x64 build predicts. <c>./build.sh test</c> publishes both first and sets
/// EDGEML_REQUIRE_PUBLISHED=1, so there these tests cannot skip; a plain <c>dotnet test</c> skips them.
/// </summary>
public class PublishedBinaryTests
{
    private static readonly string Publish = Path.Combine(TestPackages.RepositoryRoot, "artifacts", "publish");
    private static readonly string X64 = Path.Combine(Publish, "linux-x64", "edgeml-agent");
    private static readonly string Arm64 = Path.Combine(Publish, "linux-arm64", "edgeml-agent");

    private static void RequirePublished(string binary)
    {
        var required = Environment.GetEnvironmentVariable("EDGEML_REQUIRE_PUBLISHED") == "1";
        if (required) Assert.True(File.Exists(binary), $"{binary} is missing: ./build.sh publish did not run");
        Skip.IfNot(File.Exists(binary), $"{binary} not published (run ./build.sh test)");
    }

    private static List<JsonElement> Predictions(string stdout) =>
        stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();

    private static (int, string, string) RunArm64(params string[] args) =>
        AgentProcess.Exec("unshare", null,
        [
            "-m", "sh", "-c", "mount --bind \"$0\" /proc/cpuinfo && exec qemu-aarch64-static -L / \"$@\"",
            Path.Combine(TestPackages.RepositoryRoot, "tests", "data", "rpi4-cpuinfo.txt"), Arm64, .. args,
        ]);

    [SkippableTheory]
    [InlineData("sim:vibration,fault=bearing,fault-at=2")]
    [InlineData("sim:vibration,fault=imbalance,fault-at=2,shaft-hz=21")]
    [InlineData("replay:models/vibration/test/bearing_fault-32003.csv")]
    public void Arm64_build_under_qemu_predicts_what_the_x64_build_predicts(string sensor)
    {
        RequirePublished(X64);
        RequirePublished(Arm64);
        sensor = sensor.Replace("replay:", "replay:" + TestPackages.RepositoryRoot + "/", StringComparison.Ordinal);
        string[] args = ["run", "--model", TestPackages.VibrationInt8, "--sensor", sensor, "--seed", "4", "--count", "24", "--fast", "--quiet"];

        var (xCode, xOut, xErr) = AgentProcess.Exec(X64, null, args);
        var (aCode, aOut, aErr) = RunArm64(args);

        Assert.True(xCode == 0, xErr);
        Assert.True(aCode == 0, aErr);
        var x = Predictions(xOut);
        var a = Predictions(aOut);
        Assert.Equal(x.Count, a.Count);
        Assert.True(x.Count >= 14);
        Assert.Contains(x, p => p.GetProperty("label").GetString() != "normal"); // the fault shows in both
        for (var i = 0; i < x.Count; i++)
        {
            Assert.Equal(x[i].GetProperty("label").GetString(), a[i].GetProperty("label").GetString());
            // Different CPU kernels (AVX2 vs NEON) round differently; the probabilities agree closely.
            foreach (var prob in x[i].GetProperty("probs").EnumerateObject())
            {
                Assert.Equal(prob.Value.GetDouble(), a[i].GetProperty("probs").GetProperty(prob.Name).GetDouble(), 0.002);
            }
        }
    }

    [SkippableFact]
    public void Arm64_check_model_refuses_a_corrupted_package_too()
    {
        RequirePublished(Arm64);
        using var dir = new TempDirectory();
        var bytes = File.ReadAllBytes(TestPackages.VibrationInt8);
        File.WriteAllBytes(dir.File("cut.edgepkg"), bytes[..100]);
        var (code, _, stderr) = RunArm64("check-model", dir.File("cut.edgepkg"));
        Assert.Equal(1, code);
        Assert.Contains("is not a valid .edgepkg (zip) file", stderr, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Published_output_is_the_native_binary_and_linux_libraries_only()
    {
        RequirePublished(X64);
        var files = Directory.GetFiles(Path.GetDirectoryName(X64)!).Select(Path.GetFileName).ToList();
        Assert.Contains("edgeml-agent", files);
        Assert.Contains("libonnxruntime.so", files);
        Assert.DoesNotContain(files, f => f!.EndsWith(".dll", StringComparison.Ordinal) || f.EndsWith(".pdb", StringComparison.Ordinal) || f.EndsWith(".exe", StringComparison.Ordinal));
        Assert.True(new FileInfo(X64).Length < 15 * 1024 * 1024, "binary_mb target: <= 15 MB");
        Assert.True(File.Exists(Path.Combine(Path.GetDirectoryName(X64)!, "models", "vibration-fault-int8.edgepkg")));
    }
}

public class PublishedOnnxRuntimeLibraryTests
{
    [SkippableFact]
    public void Native_agent_loads_the_libonnxruntime_it_is_pointed_at()
    {
        var x64 = Path.Combine(TestPackages.RepositoryRoot, "artifacts", "publish", "linux-x64", "edgeml-agent");
        if (Environment.GetEnvironmentVariable("EDGEML_REQUIRE_PUBLISHED") == "1") Assert.True(File.Exists(x64));
        Skip.IfNot(File.Exists(x64), "not published");
        using var dir = new TempDirectory();
        var custom = dir.File("libonnxruntime.so");
        File.Copy(Path.Combine(Path.GetDirectoryName(x64)!, "libonnxruntime.so"), custom);
        var (code, stdout, stderr) = AgentProcess.Exec(x64, null, ["check-model", TestPackages.VibrationInt8, "--onnxruntime", custom]);
        Assert.True(code == 0, stderr);
        Assert.Contains($"from {custom}", stdout, StringComparison.Ordinal);
    }
}

public class PublishedTestHookTests
{
    [SkippableFact]
    public void The_published_agent_has_no_test_crash_hook_compiled_in()
    {
        var x64 = Path.Combine(TestPackages.RepositoryRoot, "artifacts", "publish", "linux-x64", "edgeml-agent");
        if (Environment.GetEnvironmentVariable("EDGEML_REQUIRE_PUBLISHED") == "1") Assert.True(File.Exists(x64));
        Skip.IfNot(File.Exists(x64), "not published");
        var binary = File.ReadAllBytes(x64);
        // String literals sit in a native AOT binary as UTF-16; the hook's variable name must not be there at all.
        Assert.Equal(-1, binary.AsSpan().IndexOf(System.Text.Encoding.Unicode.GetBytes("EDGEML_TEST_CRASH_AT")));
        Assert.Equal(-1, binary.AsSpan().IndexOf(System.Text.Encoding.UTF8.GetBytes("EDGEML_TEST_CRASH_AT")));
        // The Debug build the crash tests start still has it.
        var debug = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "edgeml-agent.dll"));
        Assert.NotEqual(-1, debug.AsSpan().IndexOf(System.Text.Encoding.Unicode.GetBytes("EDGEML_TEST_CRASH_AT")));
    }
}

public class PublishedOutboxTests
{
    [SkippableTheory]
    [InlineData("linux-x64")]
    [InlineData("linux-arm64")]
    public void Native_agent_stores_predictions_in_its_outbox_and_reports_status(string rid)
    {
        var binary = Path.Combine(TestPackages.RepositoryRoot, "artifacts", "publish", rid, "edgeml-agent");
        if (Environment.GetEnvironmentVariable("EDGEML_REQUIRE_PUBLISHED") == "1") Assert.True(File.Exists(binary));
        Skip.IfNot(File.Exists(binary), "not published");
        using var dir = new TempDirectory();
        string[] run = ["run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", "9", "--fast", "--quiet", "--data", dir.Path];
        string[] status = ["status", "--data", dir.Path];
        (int, string, string) Exec(string[] args) => rid == "linux-x64"
            ? AgentProcess.Exec(binary, null, args)
            : AgentProcess.Exec("unshare", null, ["-m", "sh", "-c", "mount --bind \"$0\" /proc/cpuinfo && exec qemu-aarch64-static -L / \"$@\"",
                Path.Combine(TestPackages.RepositoryRoot, "tests", "data", "rpi4-cpuinfo.txt"), binary, .. args]);

        var (code, _, stderr) = Exec(run);
        Assert.True(code == 0, stderr);
        var (sc, stdout, serr) = Exec(status);
        Assert.True(sc == 0, serr);
        Assert.Matches(@"telemetry\s+9\s+0\s+0", stdout);
    }
}

/// <summary>TLS through the trimmed native binary (SslStream, X509 chains, PEM loading survive AOT), against mosquitto with a private CA.</summary>
public class PublishedTlsTests
{
    [SkippableFact]
    public void Native_agent_delivers_over_tls_with_a_client_certificate()
    {
        var binary = Path.Combine(TestPackages.RepositoryRoot, "artifacts", "publish", "linux-x64", "edgeml-agent");
        if (Environment.GetEnvironmentVariable("EDGEML_REQUIRE_PUBLISHED") == "1") Assert.True(File.Exists(binary));
        Skip.IfNot(File.Exists(binary), "not published");
        Skip.IfNot(EdgeMl.TestUtilities.Mqtt.Mosquitto.Available, "mosquitto is not installed (./build.sh test installs it)");
        using var dir = new TempDirectory();
        var pki = new TestCertificates(Path.Combine(dir.Path, "pki"));
        var (serverCert, serverKey) = pki.Server();
        var (deviceCert, deviceKey) = pki.Client("native-tls");
        var (observerCert, observerKey) = pki.Client("observer");
        using var broker = new EdgeMl.TestUtilities.Mqtt.Mosquitto(listenerOptions: $"cafile {pki.CaPath}\ncertfile {serverCert}\nkeyfile {serverKey}\nrequire_certificate true").Start();
        using var sub = new EdgeMl.TestUtilities.Mqtt.MosquittoSub(broker.Port, "edgeml/#", "observer", ["--cafile", pki.CaPath, "--cert", observerCert, "--key", observerKey]);
        var (code, _, stderr) = AgentProcess.Exec(binary, null,
        [
            "run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", "7", "--fast", "--quiet", "--data", Path.Combine(dir.Path, "agent"),
            "--hub", $"mqtts://127.0.0.1:{broker.Port}", "--device", "native-tls",
            $"--Agent:Hub:CaCertificate={pki.CaPath}", $"--Agent:Hub:ClientCertificate={deviceCert}", $"--Agent:Hub:ClientKey={deviceKey}",
        ]);
        Assert.True(code == 0, stderr);
        sub.WaitUntil(m => m.Where(x => x.Topic == "edgeml/native-tls/tele")
            .Sum(x => System.Text.Json.JsonDocument.Parse(x.Payload).RootElement.GetProperty("records").GetArrayLength()) >= 7, "7 records from the native agent over TLS");
    }
}
