namespace EdgeMl.Agent.Pipeline;

/// <summary>Bound from <c>Agent:Pipeline</c>.</summary>
public sealed class PipelineSettings
{
    /// <summary>Windows waiting for inference; when full, the newest window is dropped and counted.</summary>
    public int WindowQueue { get; set; } = 4;
    /// <summary>Pace simulated and replayed sources in real time (true) or run them as fast as inference allows (false).</summary>
    public bool Realtime { get; set; } = true;
    /// <summary>First wait after a sensor error; doubles on each further error up to <see cref="RetryMaxMs"/>.</summary>
    public int RetryInitialMs { get; set; } = 100;
    public int RetryMaxMs { get; set; } = 10_000;
    /// <summary>Stop after this many predictions (0: run until stopped).</summary>
    public long Count { get; set; }
}
