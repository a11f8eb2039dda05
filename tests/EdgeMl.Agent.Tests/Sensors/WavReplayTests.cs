using EdgeMl.Agent.Inference;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Agent.Sensors;
using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Audio;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeMl.Agent.Tests.Sensors;

public class WavReplayTests
{
    [Fact]
    public void A_stereo_wav_is_replayed_frame_by_frame_at_its_own_rate_scaled_to_unit_range_with_the_channels_named_in_the_spec()
    {
        using var dir = new TempDirectory();
        var path = dir.File("two.wav");
        WavFile.Write(path, [16384, -8192, 32767, -32768, 0, 1], rate: 8000, channels: 2, withListChunk: true);

        using var wav = SensorFactory.Create($"replay:{path},channels=left+right", 0, "Agent:Sensor");
        Assert.Equal(["left", "right"], wav.Channels);
        Assert.Equal(8000, wav.SampleRateHz);
        var v = new float[2];
        Assert.True(wav.Read(v));
        Assert.Equal([0.5f, -0.25f], v);
        Assert.True(wav.Read(v));
        Assert.Equal([32767 / 32768f, -1f], v);
        Assert.True(wav.Read(v));
        Assert.False(wav.Read(v)); // end of the recording

        using var looping = SensorFactory.Create($"replay:{path},loop=true", 0, "Agent:Sensor");
        Assert.Equal(["ch1", "ch2"], looping.Channels);
        for (var i = 0; i < 3; i++) Assert.True(looping.Read(v));
        Assert.True(looping.Read(v));
        Assert.Equal([0.5f, -0.25f], v); // back at the first frame
    }

    [Fact]
    public void A_mono_wav_has_one_channel_named_audio()
    {
        using var dir = new TempDirectory();
        var path = dir.File("mono.wav");
        WavFile.Write(path, [1, 2, 3], rate: 16000);
        using var wav = SensorFactory.Create($"replay:{path}", 0, "Agent:Sensor");
        Assert.Equal(["audio"], wav.Channels);
    }

    public static TheoryData<string, string> DamagedFiles() => new()
    {
        { "float", "format code 3 (IEEE float) is not PCM; 16-bit PCM expected" },
        { "24bit", "24-bit PCM; 16-bit expected" },
        { "truncated", "truncated: the data chunk declares 4000 bytes but 8 follow" },
        { "half-frame", "truncated: the data chunk holds 7 bytes, not a whole number of 4-byte frames (2 channel(s) × 16 bit)" },
        { "text", "not a RIFF/WAVE file (16-bit PCM .wav expected)" },
        { "names", "has 2 channel(s) but 3 name(s) are given (a+b+c)" },
        { "rate", "is recorded at 8000 Hz; a WAV file is replayed at its own rate" },
        { "block-align", "the header's frame size (block align) is 0 bytes, not 2 channel(s) × 2 bytes" },
    };

    [Theory]
    [MemberData(nameof(DamagedFiles))]
    public void A_wav_that_is_not_16_bit_pcm_or_is_truncated_is_a_one_line_configuration_error_naming_the_file(string kind, string expected)
    {
        using var dir = new TempDirectory();
        var path = dir.File($"{kind}.wav");
        float[] four = [1, 2, 3, 4];
        var options = "";
        switch (kind)
        {
            case "float": WavFile.Write(path, four, 8000, 2, formatCode: 3); break;
            case "24bit": WavFile.Write(path, four, 8000, 2, bits: 24); break;
            case "truncated": WavFile.Write(path, four, 8000, 2, declaredDataBytes: 4000); break;
            case "half-frame":
                WavFile.Write(path, four, 8000, 2, declaredDataBytes: 7);
                break;
            case "text": File.WriteAllText(path, "time,audio\n0,1\n"); break;
            case "names": WavFile.Write(path, four, 8000, 2); options = ",channels=a+b+c"; break;
            case "rate": WavFile.Write(path, four, 8000, 2); options = ",rate=16000"; break;
            case "block-align": WavFile.Write(path, four, 8000, 2, blockAlign: 0); break;
        }

        var e = Assert.Throws<ConfigurationException>(() => SensorFactory.Create($"replay:{path}{options}", 0, "Agent:Sensor").Dispose());
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.Contains($"{kind}.wav", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    private static ModelRunner MonoModel(TempDirectory dir, int window, double rate)
    {
        var model = new OnnxModelBuilder().Input("x", 1, window, 1).Output("m", 1, 1).Node("ReduceMean", ["x"], ["m"], "axes", [1], ("keepdims", 0)).Build();
        var manifest = TestPackages.Manifest("x", [1, window, 1], ["audio"], window, "m", [1, 1]);
        manifest.Inputs[0].Source!.SampleRateHz = rate;
        return ModelRunner.Load(ModelPackage.Open(TestPackages.Write(dir.Path, manifest, model)), new InferenceSettings());
    }

    [Fact]
    public void A_wav_shorter_than_one_window_or_at_another_rate_than_the_model_is_refused_before_the_agent_starts()
    {
        using var dir = new TempDirectory();
        var path = dir.File("short.wav");
        WavFile.Write(path, new float[300], rate: 16000);
        using var runner = MonoModel(dir, 512, 16000);
        using (var wav = SensorFactory.Create($"replay:{path}", 0, "Agent:Sensor"))
        {
            var e = Assert.Throws<ConfigurationException>(() => new AgentPipeline(wav, new Predictor(runner), new PipelineSettings(), new AgentHealth(TimeProvider.System), [], TimeProvider.System, NullLogger.Instance));
            Assert.Contains("short.wav' holds 300 samples (0.019 s), fewer than one window of model input 'x' (512 samples)", e.Message, StringComparison.Ordinal);
        }

        var at22k = dir.File("speech22k.wav");
        WavFile.Write(at22k, new float[22050], rate: 22050);
        using (var wav = SensorFactory.Create($"replay:{at22k}", 0, "Agent:Sensor"))
        {
            var e = Assert.Throws<ConfigurationException>(() => new AgentPipeline(wav, new Predictor(runner), new PipelineSettings(), new AgentHealth(TimeProvider.System), [], TimeProvider.System, NullLogger.Instance));
            Assert.Contains("speech22k.wav' is recorded at 22050 Hz but model input 'x' expects 16000 Hz", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task The_agent_runs_a_model_on_every_window_of_a_wav_file_and_stops_at_its_end()
    {
        using var dir = new TempDirectory();
        var path = dir.File("ramp.wav");
        var samples = Enumerable.Range(0, 1000).Select(i => (float)(i * 16)).ToArray(); // 0, 16, … in int16 scale
        WavFile.Write(path, samples, rate: 16000);
        using var runner = MonoModel(dir, 100, 16000);
        using var wav = SensorFactory.Create($"replay:{path}", 0, "Agent:Sensor");
        var sink = new Pipeline.CollectingSink();
        var pipeline = new AgentPipeline(wav, new Predictor(runner), new PipelineSettings { Realtime = false }, new AgentHealth(TimeProvider.System), [sink], TimeProvider.System, NullLogger.Instance);

        await pipeline.RunAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(60));

        var seen = sink.Snapshot();
        Assert.Equal(10, seen.Count); // 1000 samples, windows of 100 with hop 100
        for (var k = 0; k < 10; k++)
        {
            var mean = Enumerable.Range(k * 100, 100).Average(i => i * 16 / 32768.0);
            Assert.Equal(mean, seen[k].Values[0], 5);
        }
    }
}
