namespace EdgeMl.Protocol.Health;

/// <summary>A device's health at one moment: what its sensors and its model are doing.</summary>
public sealed class HealthReport
{
    public DateTimeOffset At { get; set; }
    public double UptimeSeconds { get; set; }
    public ModelHealth? Model { get; set; }
    public List<SensorHealth> Sensors { get; set; } = [];
    public OutboxHealth? Outbox { get; set; }
    public SystemHealth? System { get; set; }
    /// <summary>Prediction sinks (outbox, result log, actions …) that failed at least once; empty when all are fine.</summary>
    public List<SinkHealth> Sinks { get; set; } = [];
}

/// <summary>
/// A prediction sink that failed: how often, and the last error. A sink failing 20 times in a row stops the agent;
/// a full disk does not count as failing: the sink drops the prediction (<see cref="DroppedDiskFull"/>) and goes on.
/// </summary>
public sealed class SinkHealth
{
    public string Name { get; set; } = "";
    public long Errors { get; set; }
    /// <summary>True while the sink cannot write because its file system is full.</summary>
    public bool DiskFull { get; set; }
    public long DroppedDiskFull { get; set; }
    public string? LastError { get; set; }
    public DateTimeOffset? LastErrorAt { get; set; }
}

/// <summary>The device's store-and-forward queue: what waits, and what had to be dropped, per record class.</summary>
public sealed class OutboxHealth
{
    public Dictionary<string, long> Depth { get; set; } = [];
    public long Bytes { get; set; }
    public long MaxBytes { get; set; }
    public Dictionary<string, long> Dropped { get; set; } = [];
    public Dictionary<string, long> Expired { get; set; } = [];
    public DateTimeOffset? Oldest { get; set; }
    /// <summary>Of <see cref="Dropped"/>, per class, the records dropped because the store could not write (reason <c>disk-full</c> or another write error).</summary>
    public Dictionary<string, long> DroppedDiskFull { get; set; } = [];
    /// <summary>Of <see cref="Dropped"/>, per class, the records larger than the broker's maximum packet size (reason <c>too-large</c>).</summary>
    public Dictionary<string, long> DroppedTooLarge { get; set; } = [];
    /// <summary>True while the data directory's file system is full: new records are dropped until space comes back.</summary>
    public bool DiskFull { get; set; }
    /// <summary>Why the store cannot write now (one line), or null while it works.</summary>
    public string? StoreError { get; set; }
    /// <summary>
    /// Bytes the outbox takes on disk (its LiteDB file and that file's log): more than <see cref="Bytes"/> (pages, indexes),
    /// and it shrinks back when the outbox is mostly empty. 0 when unknown (reports from older agents).
    /// </summary>
    public long FileBytes { get; set; }
}

public sealed class ModelHealth
{
    public string Name { get; set; } = "";
    public string Version { get; set; } = "";
    public string Provider { get; set; } = "";
    public long Predictions { get; set; }
    public long WindowsDropped { get; set; }
    /// <summary>Windows the model failed on (skipped).</summary>
    public long InferenceErrors { get; set; }
    public string? LastInferenceError { get; set; }
    public double InferencesPerSecond { get; set; }
    public double LatencyP50Ms { get; set; }
    public double LatencyP99Ms { get; set; }
}

public sealed class SensorHealth
{
    public string Name { get; set; } = "";
    /// <summary>
    /// <c>ok</c>, <c>failing</c> (retrying with backoff), <c>misconfigured</c> (another chip than configured answers:
    /// not retried, the agent stops) or <c>ended</c> (a replay reached its end).
    /// </summary>
    public string State { get; set; } = "ok";
    public long Samples { get; set; }
    public long Errors { get; set; }
    public int ConsecutiveErrors { get; set; }
    public string? LastError { get; set; }
    public DateTimeOffset? LastErrorAt { get; set; }
    public double? RetryInSeconds { get; set; }
}

/// <summary>The machine the agent runs on, read from /proc and /sys (no tools, no privileges).</summary>
public sealed class SystemHealth
{
    public int Cpus { get; set; }
    /// <summary>All CPUs busy share since the previous report, 0..100.</summary>
    public double CpuPercent { get; set; }
    public double Load1 { get; set; }
    public double MemoryTotalMb { get; set; }
    public double MemoryUsedPercent { get; set; }
    public double ProcessRssMb { get; set; }
    /// <summary>The agent's managed heap after the last garbage collection (part of the RSS).</summary>
    public double ManagedHeapMb { get; set; }
    /// <summary>Free space for the agent's data directory (the outbox lives there).</summary>
    public double DiskFreeMb { get; set; }
    /// <summary>Hottest thermal zone in °C; null where the board has none (containers, most VMs).</summary>
    public double? TemperatureC { get; set; }
    public double MachineUptimeSeconds { get; set; }
}
