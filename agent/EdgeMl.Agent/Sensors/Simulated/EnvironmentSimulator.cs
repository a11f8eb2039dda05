namespace EdgeMl.Agent.Sensors.Simulated;

/// <summary>
/// An environmental sensor (channels temperature °C, humidity %RH, pressure hPa): a daily
/// temperature cycle, humidity moving against it, slowly wandering pressure; deterministic for a seed.
/// </summary>
public sealed class EnvironmentSimulator(int seed, double sampleRateHz = 1, double driftPerHour = 0) : ISensorSource
{
    private static readonly string[] ChannelNames = ["temperature", "humidity", "pressure"];
    private readonly Random _rng = new(seed);
    private long _n;

    public string Name => "sim:environment";
    public IReadOnlyList<string> Channels => ChannelNames;
    public double SampleRateHz => sampleRateHz;
    public bool IsVirtual => true;

    public bool Read(Span<float> values)
    {
        var t = _n++ / sampleRateHz;
        var day = Math.Sin(2 * Math.PI * t / 86400.0);
        var hours = t / 3600.0;
        values[0] = (float)(22 + 4 * day + driftPerHour * hours + 0.05 * Noise());
        values[1] = (float)(45 - 8 * day + 0.2 * Noise());
        values[2] = (float)(1013.25 + 2 * Math.Sin(2 * Math.PI * t / 43200.0) + 0.02 * Noise());
        return true;
    }

    private double Noise() => 2 * _rng.NextDouble() - 1;

    public void Dispose() { }
}
