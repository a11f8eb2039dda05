namespace EdgeMl.Agent.Pipeline;

/// <summary>
/// Whether the running pipeline is really making progress, for the systemd watchdog (<see cref="Hosting.SystemdWatchdog"/>).
/// The host points it at each pipeline it starts (<see cref="Watch"/>; a model update starts a new one); one reader asks
/// <see cref="Check"/> now and then. Progress between two checks means both stages moved:
/// <list type="bullet">
/// <item>the sensor stage ended a read: a sample, or an error it handles (a sensor that fails and is retried with
/// backoff is handled, not wedged: the agent reports it in health and keeps trying);</item>
/// <item>the inference stage ended an inference (a prediction or a handled model error), or no window became due
/// (a slow sensor, a long hop: nothing was asked of it).</item>
/// </list>
/// A sensor read that never returns, or an inference that never ends, stops the progress, and so the pings.
/// </summary>
public sealed class PipelineProgress
{
    private AgentHealth? _health;
    private AgentHealth? _checked;
    private ProgressCounters _last;

    /// <summary>The pipeline now running reports into <paramref name="health"/>. Thread-safe.</summary>
    public void Watch(AgentHealth health) => Volatile.Write(ref _health, health);

    /// <summary>A pipeline has started and its sensor ended its first read (sample or handled error): the agent is up.</summary>
    public bool Started => Volatile.Read(ref _health) is { } h && h.Progress().SensorReads > 0;

    /// <summary>
    /// What happened since the previous call (one caller at a time). A pipeline seen for the first time counts as
    /// progress (it was just started); before any pipeline there is none.
    /// </summary>
    public ProgressCheck Check()
    {
        var health = Volatile.Read(ref _health);
        if (health is null) return new ProgressCheck(false, false, default);
        var now = health.Progress();
        if (!ReferenceEquals(health, _checked))
        {
            _checked = health;
            _last = now;
            return new ProgressCheck(true, true, now);
        }

        var sensor = now.SensorReads > _last.SensorReads;
        var inference = now.Inferences > _last.Inferences || now.WindowsDue == _last.WindowsDue;
        _last = now;
        return new ProgressCheck(sensor, inference, now);
    }
}

/// <summary>One <see cref="PipelineProgress.Check"/>: which stages moved since the previous one, and the counters now.</summary>
public readonly record struct ProgressCheck(bool SensorMoved, bool InferenceMoved, ProgressCounters Counters)
{
    /// <summary>Both stages moved: the pipeline is alive.</summary>
    public bool Advanced => SensorMoved && InferenceMoved;

    /// <summary>Which stage stands still, in words (for the log and systemd's STATUS line).</summary>
    public string Stalled => (SensorMoved, InferenceMoved) switch
    {
        (false, false) => "no sensor read and no inference ended",
        (false, true) => "no sensor read ended",
        (true, false) => "windows are due but no inference ended",
        _ => "",
    };
}
