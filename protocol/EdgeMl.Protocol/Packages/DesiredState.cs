namespace EdgeMl.Protocol.Packages;

/// <summary>
/// <c>edgeml/{dev}/state/desired</c> (retained, hub → device): the model the device should run, and where to get it.
/// The device downloads <see cref="Url"/> (relative to its hub; HTTP range requests resume a cut download) and
/// checks size, SHA-256 and signature before anything else happens.
/// </summary>
public sealed class DesiredModel
{
    public string Name { get; set; } = "";
    public string Version { get; set; } = "";
    /// <summary>SHA-256 of the whole package file.</summary>
    public string Sha256 { get; set; } = "";
    public long SizeBytes { get; set; }
    public string Url { get; set; } = "";

    /// <summary>
    /// Switch to the model once it is staged (and, with <see cref="ShadowSeconds"/>, shadowed). False: stage and
    /// shadow it, report the figures, and wait for the hub to say activate (a rollout's gates decide).
    /// </summary>
    public bool Activate { get; set; } = true;

    /// <summary>Run the staged model beside the active one on the same windows for this long before it may be activated.</summary>
    public int ShadowSeconds { get; set; }

    /// <summary>After activation: how long the device watches the new model before it is confirmed good (device-side rollback window).</summary>
    public int? WatchSeconds { get; set; }

    /// <summary>Device-side bound in the watch period: p99 latency at most this many times the previous model's (0: none).</summary>
    public double? MaxLatencyRatio { get; set; }

    /// <summary>Device-side bound in the watch period: share of inferences that may fail (0: none may).</summary>
    public double? MaxErrorRate { get; set; }

    /// <summary>The rollout this desired state belongs to (for the audit trail and status).</summary>
    public string? Rollout { get; set; }
}

/// <summary>
/// <c>edgeml/{dev}/state/reported</c> (retained, device → hub): where the device is with a model update.
/// Phases: downloading, verified, staged, shadow, active; failed or rolled-back with <see cref="Reason"/>.
/// </summary>
public sealed class ReportedState
{
    public string Phase { get; set; } = "";
    public string Name { get; set; } = "";
    public string Version { get; set; } = "";
    public string? Reason { get; set; }
    /// <summary>The model the device is running now (name@version).</summary>
    public string? Active { get; set; }
    /// <summary>The model in the other slot, the one a rollback returns to (name@version).</summary>
    public string? Previous { get; set; }
    public long? Downloaded { get; set; }
    /// <summary>Figures of the shadow run (phase shadow, and kept once the model is active).</summary>
    public ShadowFigures? Shadow { get; set; }
    /// <summary>True once the active model has passed its watch period (confirmed good).</summary>
    public bool? Confirmed { get; set; }
    public string? Rollout { get; set; }
    public DateTimeOffset At { get; set; }
}

/// <summary>The staged model run beside the active one on the same live windows.</summary>
public sealed class ShadowFigures
{
    /// <summary>Windows both models ran on.</summary>
    public long Runs { get; set; }
    /// <summary>Share of windows where the candidate's top class equals the active model's (classifiers), or its outputs are within 5 % (others).</summary>
    public double Agreement { get; set; }
    /// <summary>Candidate p99 latency / active p99 latency, measured interleaved on the same windows.</summary>
    public double LatencyRatio { get; set; }
    public double ActiveP99Ms { get; set; }
    public double ShadowP99Ms { get; set; }
    /// <summary>Candidate inferences that threw.</summary>
    public long Errors { get; set; }
    public double ErrorRate { get; set; }
    /// <summary>Share of each top class in the candidate's and the active model's outputs.</summary>
    public Dictionary<string, double> Distribution { get; set; } = [];
    public Dictionary<string, double> ActiveDistribution { get; set; } = [];
    public double Seconds { get; set; }
    /// <summary>The soak period has passed.</summary>
    public bool Done { get; set; }
}
