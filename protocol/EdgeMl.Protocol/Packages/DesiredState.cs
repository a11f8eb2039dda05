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
    public long? Downloaded { get; set; }
    public DateTimeOffset At { get; set; }
}
