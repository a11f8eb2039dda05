using System.Text.Json;
using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Cli;

public class AgentCliTests
{
    [Fact]
    public void Check_model_accepts_the_bundled_int8_package()
    {
        var (code, stdout, stderr) = AgentProcess.Agent("check-model", TestPackages.VibrationInt8);
        Assert.True(code == 0, stderr);
        Assert.Contains("ok: vibration-fault@1.0.0", stdout, StringComparison.Ordinal);
        Assert.Contains("quantized qdq", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Check_model_on_a_truncated_package_exits_1_with_a_clear_message()
    {
        using var dir = new TempDirectory();
        var bytes = File.ReadAllBytes(TestPackages.VibrationInt8);
        var truncated = dir.File("truncated.edgepkg");
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);

        var (code, stdout, stderr) = AgentProcess.Agent("check-model", truncated);

        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.StartsWith("error: model package '", stderr, StringComparison.Ordinal);
        Assert.Contains("truncated.edgepkg' is not a valid .edgepkg (zip) file — truncated or corrupted?", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal); // no stack trace for a user error
    }

    [Fact]
    public void Check_model_on_a_package_with_a_corrupted_model_exits_1_naming_the_checksum()
    {
        using var dir = new TempDirectory();
        var package = EdgeMl.Protocol.Packages.ModelPackage.Open(TestPackages.VibrationInt8);
        var model = package.ModelBytes.ToArray();
        model[model.Length / 2] ^= 0x5A;
        var path = dir.File("corrupt.edgepkg");
        using (var zip = System.IO.Compression.ZipFile.Open(path, System.IO.Compression.ZipArchiveMode.Create))
        {
            using (var s = zip.CreateEntry("manifest.json").Open()) s.Write(package.ManifestBytes);
            using (var s = zip.CreateEntry("model.onnx").Open()) s.Write(model);
        }

        var (code, _, stderr) = AgentProcess.Agent("check-model", path);

        Assert.Equal(1, code);
        Assert.Contains("SHA-256 of model.onnx is", stderr, StringComparison.Ordinal);
        Assert.Contains("corrupted or was altered", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Check_model_on_a_missing_file_exits_1()
    {
        var (code, _, stderr) = AgentProcess.Agent("check-model", "/nonexistent/x.edgepkg");
        Assert.Equal(1, code);
        Assert.Contains("'/nonexistent/x.edgepkg' does not exist", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_prints_one_json_line_per_prediction_and_stops_after_count()
    {
        var (code, stdout, stderr) = AgentProcess.Agent("run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--seed", "3", "--count", "5", "--fast", "--quiet");
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(5, lines.Length);
        var seq = 0;
        foreach (var line in lines)
        {
            var p = JsonDocument.Parse(line).RootElement;
            Assert.Equal(++seq, p.GetProperty("seq").GetInt32());
            Assert.Equal("normal", p.GetProperty("label").GetString());
            Assert.Equal("vibration-fault@1.0.0", p.GetProperty("model").GetString());
            var probs = p.GetProperty("probs").EnumerateObject().Sum(x => x.Value.GetDouble());
            Assert.Equal(1.0, probs, 0.001);
        }
    }

    [Fact]
    public void A_run_that_ends_before_the_broker_acknowledged_everything_says_how_many_records_stay_in_the_outbox()
    {
        // Nobody listens there: every record stays on the device. Someone counting what reached the hub must be told they
        // are kept (and sent at the next start), not left to take them for lost.
        using var dir = new TempDirectory();
        var data = Path.Combine(dir.Path, "data");
        var broker = $"mqtt://127.0.0.1:{EdgeMl.TestUtilities.Mqtt.Mosquitto.FreePort()}";
        var (code, _, stderr) = AgentProcess.Agent("run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--count", "20", "--fast", "--quiet",
            "--data", data, "--hub", broker, "--device", "left-1");
        Assert.True(code == 0, stderr);
        var line = Assert.Single(stderr.Split('\n'), l => l.Contains("kept in the outbox", StringComparison.Ordinal));
        var (_, status, _) = AgentProcess.Agent("status", "--data", data, "--json");
        var depth = JsonDocument.Parse(status).RootElement.GetProperty("outbox").GetProperty("depth");
        var left = depth.EnumerateObject().Sum(c => c.Value.GetInt64());
        Assert.Equal(20, depth.GetProperty("telemetry").GetInt64());
        Assert.Contains($"{left} record(s) not acknowledged by {broker} yet (", line, StringComparison.Ordinal);
        Assert.Contains("20 telemetry", line, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_config_value_exits_1_naming_the_key()
    {
        var (code, _, stderr) = AgentProcess.Agent("run", "--model", TestPackages.VibrationInt8, "--sensor", "sim:vibration", "--Agent:Inference:Threads=-3");
        Assert.Equal(1, code);
        Assert.Contains("configuration error at 'Agent:Inference:Threads'", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_config_file_exits_1_naming_the_key()
    {
        using var dir = new TempDirectory();
        var config = dir.File("appsettings.json");
        File.WriteAllText(config, $$"""{ "Agent": { "Model": "{{TestPackages.VibrationInt8}}", "Sensor": "sim:vibration", "Pipeline": { "WindowQueue": 0 } } }""");
        var (code, _, stderr) = AgentProcess.Agent("run", "--config", config);
        Assert.Equal(1, code);
        Assert.Contains("'Agent:Pipeline:WindowQueue': 0 is not between 1 and 1024", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Service_mode_runs_from_a_config_file_with_environment_overrides_and_writes_the_result_log()
    {
        using var dir = new TempDirectory();
        var config = dir.File("appsettings.json");
        var log = dir.File("results/predictions.jsonl");
        File.WriteAllText(config, $$"""
            {
              "Agent": {
                "Model": "{{TestPackages.VibrationInt8}}",
                "Sensor": "sim:vibration,fault=imbalance",
                "ResultLog": "{{log}}",
                "Pipeline": { "Realtime": false, "Count": 3 },
                "Inference": { "Threads": 4 }
              }
            }
            """);
        var (code, _, stderr) = AgentProcess.Exec("dotnet", new() { ["EDGEML_Agent__Pipeline__Count"] = "7" },
            [Path.Combine(AppContext.BaseDirectory, "edgeml-agent.dll"), "run", "--config", config]);
        Assert.True(code == 0, stderr);
        Assert.Contains("Running vibration-fault@1.0.0 on cpu", stderr, StringComparison.Ordinal);
        var lines = File.ReadAllLines(log);
        Assert.Equal(7, lines.Length); // the environment overrides the file
        Assert.All(lines, l => Assert.Equal("imbalance", JsonDocument.Parse(l).RootElement.GetProperty("label").GetString()));
    }

    [Fact]
    public void Unknown_option_is_a_usage_error()
    {
        var (code, _, stderr) = AgentProcess.Agent("check-model", TestPackages.VibrationInt8, "--provder", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("Unrecognized command or argument '--provder'", stderr, StringComparison.Ordinal);
        Assert.Single(stderr.Trim().Split('\n')); // one line, no usage dump
    }

    [Fact]
    public void Unavailable_execution_provider_falls_back_to_cpu_with_a_warning()
    {
        var (code, stdout, stderr) = AgentProcess.Agent("check-model", TestPackages.VibrationInt8, "--provider", "cuda");
        Assert.True(code == 0, stderr);
        Assert.Contains("execution provider 'cuda' is not in this ONNX Runtime build", stderr, StringComparison.Ordinal);
        Assert.Contains("provider   cpu", stdout, StringComparison.Ordinal);
    }
}

public class OnnxRuntimeLibraryTests
{
    [Fact]
    public void A_user_supplied_libonnxruntime_is_the_one_loaded()
    {
        // As on a Jetson: the agent is pointed at a libonnxruntime.so outside its own folder.
        using var dir = new TempDirectory();
        var bundled = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libonnxruntime.so");
        var custom = dir.File("libonnxruntime.so");
        File.Copy(bundled, custom);

        var (code, stdout, stderr) = AgentProcess.Agent("check-model", TestPackages.VibrationInt8, "--onnxruntime", custom);

        Assert.True(code == 0, stderr);
        Assert.Contains($"from {custom}", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_library_is_a_configuration_error()
    {
        var (code, _, stderr) = AgentProcess.Agent("check-model", TestPackages.VibrationInt8, "--onnxruntime", "/nonexistent/libonnxruntime.so");
        Assert.Equal(1, code);
        Assert.Contains("'Agent:Inference:OnnxRuntimeLibrary': '/nonexistent/libonnxruntime.so' does not exist", stderr, StringComparison.Ordinal);
    }
}
