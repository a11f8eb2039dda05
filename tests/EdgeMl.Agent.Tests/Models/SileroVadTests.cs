using System.Globalization;
using System.Text.Json;
using EdgeMl.Agent.Configuration;
using EdgeMl.Agent.Hosting;
using EdgeMl.Agent.Pipeline;
using EdgeMl.ModelTools;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Audio;
using EdgeMl.TestUtilities.ThirdParty;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;
using Xunit.Abstractions;

namespace EdgeMl.Agent.Tests.Models;

/// <summary>
/// A published audio model on the device path: silero VAD v5 (fetched with npm as the third-party suite does; an int64
/// sample-rate input, a float32 state carried from call to call) packaged with the toolchain's packager and run by the
/// agent on a 16 kHz 16-bit WAV file — noise, then speech made with espeak-ng — compared chunk by chunk with ONNX Runtime
/// run directly on the same 512-sample chunks with the same state carry-over.
/// </summary>
public class SileroVadTests(ITestOutputHelper log)
{
    private const int Rate = 16000;
    private const int Chunk = 512;

    /// <summary>The manifest a user writes for silero v5 (docs/models.md shows the same).</summary>
    public const string ManifestTemplate = """
        {
          "name": "silero-vad",
          "version": "5.0.0",
          "description": "silero VAD v5: speech probability per 32 ms chunk of 16 kHz audio",
          "inputs": [
            { "name": "input", "shape": [1, 512],
              "source": { "channels": ["audio"], "window": 512, "hop": 512, "sampleRateHz": 16000 } }
          ],
          "constants": [ { "name": "sr", "type": "int64", "shape": [], "values": [16000] } ],
          "state": [ { "input": "state", "output": "stateN", "type": "float32", "shape": [2, 1, 128] } ],
          "outputs": [ { "name": "output", "shape": [1, 1], "kind": "regression" } ]
        }
        """;

    /// <summary>The recording (2 s of noise, then espeak-ng speech) and the package made from the published model.</summary>
    private static (string Model, string Wav, string Package, int NoiseChunks) Prepare(TempDirectory dir)
    {
        var model = Path.Combine(ThirdPartyModels.Fetch(ThirdPartyModels.SileroVad), "dist/silero_vad_v5.onnx");

        // 2 s of noise (hiss about 26 dB below full scale), then speech from espeak-ng (resampled to 16 kHz).
        var random = new Random(7);
        var noise = Enumerable.Range(0, 2 * Rate).Select(_ => (float)(random.NextDouble() - 0.5) * 3000).ToArray();
        var speech = ThirdPartyData.Speech("turn on the kitchen lights and tell me the weather for tomorrow", "en-us", 150, 6, seed: 1);
        var wav = dir.File("noise-then-speech.wav");
        WavFile.Write(wav, [.. noise, .. speech], Rate);

        // Package with the toolchain (manifest checked against the model; baseline from a CSV of the same audio).
        File.WriteAllText(dir.File("manifest.json"), ManifestTemplate);
        var reference = dir.File("reference.csv");
        File.WriteAllLines(reference, ["audio", .. speech.Take(Rate).Select(v => (v / 32768f).ToString("R", CultureInfo.InvariantCulture))]);
        var package = dir.File("silero-vad.edgepkg");
        var packaged = Packager.Package(model, dir.File("manifest.json"), reference, package);
        Assert.Equal(Rate / Chunk, packaged.Windows);
        return (model, wav, package, noise.Length / Chunk);
    }

    private static float[] Scores(string resultLines) =>
        resultLines.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("values")[0].GetSingle()).ToArray();

    /// <summary>ONNX Runtime directly, on the 512-sample chunks of the same file, state carried over by hand.</summary>
    private static float[] Direct(string model, string wav)
    {
        var (rate, pcm) = ThirdPartyData.ReadWav(File.ReadAllBytes(wav));
        Assert.Equal(Rate, rate);
        return Direct(model, pcm.Select(v => v / 32768f).ToArray());
    }

    [Fact]
    public async Task Silero_vad_v5_runs_in_the_agent_on_a_wav_file_with_the_same_scores_as_onnx_runtime_speech_high_and_noise_low()
    {
        using var dir = new TempDirectory();
        var (model, wav, package, noiseCount) = Prepare(dir);

        // The agent: replay:FILE.wav → windows of 512 → the model with sr and state bound → result lines.
        using var results = new MemoryStream();
        var options = new AgentOptions { Model = package, Sensor = $"replay:{wav}", Pipeline = new PipelineSettings { Realtime = false } };
        using (var runtime = new AgentRuntime(options, NullLoggerFactory.Instance, resultStream: results))
        {
            await runtime.RunAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(120));
        }

        var agent = Scores(System.Text.Encoding.UTF8.GetString(results.ToArray()));
        var direct = Direct(model, wav);
        Assert.Equal(direct.Length, agent.Length);
        Assert.True(agent.Length > 200, $"{agent.Length} chunks");
        for (var k = 0; k < agent.Length; k++)
        {
            Assert.True(Math.Abs(agent[k] - direct[k]) < 1e-5, $"chunk {k}: agent {agent[k]}, ONNX Runtime {direct[k]}");
        }

        var noiseChunks = agent.Take(noiseCount).ToArray();
        var speechChunks = agent.Skip(noiseCount + 1).ToArray();
        log.WriteLine($"{agent.Length} chunks; largest difference to ONNX Runtime {agent.Zip(direct, (a, b) => Math.Abs(a - b)).Max():E2}; " +
            $"noise max {noiseChunks.Max():0.000}, speech part max {speechChunks.Max():0.000}, {speechChunks.Count(p => p > 0.5)} of {speechChunks.Length} above 0.5");
        Assert.True(noiseChunks.Max() < 0.2, $"noise scored up to {noiseChunks.Max():0.000}");
        Assert.True(speechChunks.Max() > 0.9, $"speech scored at most {speechChunks.Max():0.000}");
        Assert.True(speechChunks.Count(p => p > 0.5) >= speechChunks.Length / 4, $"only {speechChunks.Count(p => p > 0.5)} of {speechChunks.Length} speech-part chunks above 0.5");
    }

    /// <summary>The native AOT agent from <c>./build.sh publish linux-x64</c> (skipped when not published, required under ./build.sh test).</summary>
    [SkippableFact]
    public void The_published_native_agent_scores_the_wav_file_as_onnx_runtime_does()
    {
        var agentBinary = Path.Combine(TestPackages.RepositoryRoot, "artifacts", "publish", "linux-x64", "edgeml-agent");
        if (Environment.GetEnvironmentVariable("EDGEML_REQUIRE_PUBLISHED") == "1") Assert.True(File.Exists(agentBinary), $"{agentBinary} is missing");
        Skip.IfNot(File.Exists(agentBinary), $"{agentBinary} not published (./build.sh publish linux-x64)");
        using var dir = new TempDirectory();
        var (model, wav, package, noiseCount) = Prepare(dir);

        var (code, stdout, stderr) = Cli.AgentProcess.Exec(agentBinary, null, ["run", "--model", package, "--sensor", $"replay:{wav}", "--fast", "--quiet"]);

        Assert.True(code == 0, stderr);
        var agent = Scores(stdout);
        var direct = Direct(model, wav);
        Assert.Equal(direct.Length, agent.Length);
        for (var k = 0; k < agent.Length; k++)
        {
            Assert.True(Math.Abs(agent[k] - direct[k]) < 1e-5, $"chunk {k}: published agent {agent[k]}, ONNX Runtime {direct[k]}");
        }

        Assert.True(agent.Take(noiseCount).Max() < 0.2 && agent.Skip(noiseCount).Max() > 0.9);
    }

    [Fact]
    public void Packaging_silero_without_its_sr_constant_or_with_the_wrong_type_is_refused_naming_the_input()
    {
        using var dir = new TempDirectory();
        var model = Path.Combine(ThirdPartyModels.Fetch(ThirdPartyModels.SileroVad), "dist/silero_vad_v5.onnx");
        var without = dir.File("without-sr.json");
        File.WriteAllText(without, ManifestTemplate.Replace("\"constants\": [ { \"name\": \"sr\", \"type\": \"int64\", \"shape\": [], \"values\": [16000] } ],", "", StringComparison.Ordinal));
        var wrongType = dir.File("int32-sr.json");
        File.WriteAllText(wrongType, ManifestTemplate.Replace("\"type\": \"int64\"", "\"type\": \"int32\"", StringComparison.Ordinal));

        var e = Assert.Throws<ModelToolException>(() => Packager.Package(model, without, null, dir.File("a.edgepkg")));
        Assert.Contains("model input 'sr' int64[] is not declared in the manifest (neither in inputs, state nor constants)", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ModelToolException>(() => Packager.Package(model, wrongType, null, dir.File("b.edgepkg")));
        Assert.Contains("constants[0]: model input 'sr' is int64[], the manifest declares int32", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("a.edgepkg")) || File.Exists(dir.File("b.edgepkg")));
    }

    private static float[] Direct(string model, float[] audio)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        using var session = new InferenceSession(model, options);
        using var run = new RunOptions();
        var state = new float[2 * 128];
        long[] sr = [Rate];
        var scores = new List<float>();
        for (var start = 0; start + Chunk <= audio.Length; start += Chunk)
        {
            var chunk = audio.AsSpan(start, Chunk).ToArray();
            using var x = OrtValue.CreateTensorValueFromMemory(chunk, [1, Chunk]);
            using var s = OrtValue.CreateTensorValueFromMemory(state, [2, 1, 128]);
            using var r = OrtValue.CreateTensorValueFromMemory(sr, []);
            using var outputs = session.Run(run, ["input", "state", "sr"], [x, s, r], ["output", "stateN"]);
            scores.Add(outputs[0].GetTensorDataAsSpan<float>()[0]);
            state = outputs[1].GetTensorDataAsSpan<float>().ToArray();
        }

        return [.. scores];
    }
}
