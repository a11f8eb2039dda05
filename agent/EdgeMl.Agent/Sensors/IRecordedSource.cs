namespace EdgeMl.Agent.Sensors;

/// <summary>
/// A source replaying a recording whose length and sample rate are known up front (a WAV file), so the pipeline can
/// refuse, before it starts, a recording at another rate than the model's or too short for one window.
/// </summary>
public interface IRecordedSource
{
    /// <summary>The recording, for messages (its path).</summary>
    string Recording { get; }

    /// <summary>Samples (frames: one value per channel) in the recording.</summary>
    long Frames { get; }

    /// <summary>The rate it was recorded at, from the file (samples per second).</summary>
    double RecordedRateHz { get; }
}
