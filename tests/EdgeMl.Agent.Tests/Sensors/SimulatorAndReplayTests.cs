using EdgeMl.Agent.Sensors;
using EdgeMl.Agent.Sensors.Replay;
using EdgeMl.Agent.Sensors.Simulated;
using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Sensors;

public class SimulatorAndReplayTests
{
    private static float[] Take(ISensorSource s, int n)
    {
        var all = new float[n * s.Channels.Count];
        for (var i = 0; i < n; i++) s.Read(all.AsSpan(i * s.Channels.Count, s.Channels.Count));
        return all;
    }

    private static double Rms(float[] samples, int channel, int channels, double offset = 0)
    {
        double sum = 0;
        var n = samples.Length / channels;
        for (var i = 0; i < n; i++) sum += Math.Pow(samples[i * channels + channel] - offset, 2);
        return Math.Sqrt(sum / n);
    }

    [Fact]
    public void Same_seed_gives_the_same_signal_and_another_seed_does_not()
    {
        var a = Take(SensorFactory.Create("sim:vibration", 5, "s"), 500);
        var b = Take(SensorFactory.Create("sim:vibration", 5, "s"), 500);
        var c = Take(SensorFactory.Create("sim:vibration", 6, "s"), 500);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void Faults_change_the_vibration_the_way_they_do_on_a_machine()
    {
        var healthy = Take(new VibrationSimulator(new VibrationSettings { Seed = 3, Noise = 0.05 }), 4000);
        var imbalance = Take(new VibrationSimulator(new VibrationSettings { Seed = 3, Noise = 0.05, Fault = MachineFault.Imbalance }), 4000);
        var bearing = Take(new VibrationSimulator(new VibrationSettings { Seed = 3, Noise = 0.05, Fault = MachineFault.Bearing }), 4000);

        // Imbalance: the radial (x) vibration grows several times; bearing impacts: peaky y (crest factor).
        Assert.True(Rms(imbalance, 0, 3) > 2.5 * Rms(healthy, 0, 3));
        static double Crest(float[] s) => Enumerable.Range(0, s.Length / 3).Max(i => Math.Abs(s[i * 3 + 1])) / Rms(s, 1, 3);
        Assert.True(Crest(bearing) > 1.5 * Crest(healthy), $"crest factor {Crest(bearing)} vs {Crest(healthy)}");
        Assert.Equal(9.81, healthy.Where((_, i) => i % 3 == 2).Average(), 0.05);
    }

    [Fact]
    public void Drift_offsets_the_signal_over_simulated_hours()
    {
        var sim = new VibrationSimulator(new VibrationSettings { Seed = 1, SampleRateHz = 1000, DriftOffsetPerHour = 3600 });
        var first = Take(sim, 1000).Where((_, i) => i % 3 == 0).Average();
        var later = Take(sim, 1000).Where((_, i) => i % 3 == 0).Average();
        Assert.Equal(1.0, later - first, 0.05); // 1 m/s² per simulated second
    }

    [Fact]
    public void Replay_reads_named_columns_skips_time_and_reports_a_bad_cell_with_file_line_and_column()
    {
        using var dir = new TempDirectory();
        var path = dir.File("rec.csv");
        File.WriteAllText(path, "time,ax,ay\n0.0,1.5,2\n0.001,-3,4e-1\n0.002,oops,1\n");
        using var replay = new CsvReplaySensor(path, 1000, loop: false);
        Assert.Equal(["ax", "ay"], replay.Channels);
        var v = new float[2];
        Assert.True(replay.Read(v));
        Assert.Equal([1.5f, 2f], v);
        Assert.True(replay.Read(v));
        Assert.Equal([-3f, 0.4f], v);
        var e = Assert.Throws<InvalidDataException>(() => replay.Read(v));
        Assert.Contains("rec.csv:4: column 2 ('ax'): 'oops' is not a number", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_replay_file_with_only_a_header_and_loop_is_a_configuration_error_naming_the_file()
    {
        using var dir = new TempDirectory();
        var path = dir.File("empty.csv");
        File.WriteAllText(path, "t,ax,ay\n\n");
        var e = Assert.Throws<ConfigurationException>(() => new CsvReplaySensor(path, 100, loop: true));
        Assert.Contains($"'{path}' has a header but no data rows", e.Message, StringComparison.Ordinal);
        using var once = new CsvReplaySensor(path, 100, loop: false); // without loop it simply ends
        Assert.False(once.Read(new float[2]));
    }

    [Fact]
    public void Replay_ends_or_loops()
    {
        using var dir = new TempDirectory();
        var path = dir.File("rec.csv");
        File.WriteAllText(path, "v\n1\n2\n");
        var v = new float[1];
        using (var once = new CsvReplaySensor(path, 10, loop: false))
        {
            Assert.True(once.Read(v));
            Assert.True(once.Read(v));
            Assert.False(once.Read(v));
        }

        using var looped = new CsvReplaySensor(path, 10, loop: true);
        var seen = Enumerable.Range(0, 5).Select(_ => { looped.Read(v); return v[0]; }).ToArray();
        Assert.Equal([1f, 2, 1, 2, 1], seen);
    }
}
