namespace EdgeMl.Agent.Sensors;

/// <summary>
/// A source of timestamped multi-channel samples. <see cref="Read"/> is called by the sampler at the
/// source's rate (or as fast as it answers, for a source that is not paced) and writes one value
/// per channel. A source that cannot answer throws <see cref="IOException"/>; the sampler retries
/// with backoff and reports it in health.
/// </summary>
public interface ISensorSource : IDisposable
{
    /// <summary>A name for logs and health, for example <c>bme280@1:0x76</c>.</summary>
    string Name { get; }

    IReadOnlyList<string> Channels { get; }

    /// <summary>Samples per second the source is read at.</summary>
    double SampleRateHz { get; }

    /// <summary>
    /// True when the source produces samples as fast as it is read (simulation, replay) and the
    /// sampler may skip real-time pacing.
    /// </summary>
    bool IsVirtual { get; }

    /// <summary>Reads one sample into <paramref name="values"/> (one value per channel). False at end of data.</summary>
    bool Read(Span<float> values);
}
