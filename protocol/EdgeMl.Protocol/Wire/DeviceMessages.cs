using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeMl.Protocol.Wire;

/// <summary>
/// The payload of <c>edgeml/{dev}/tele</c>, <c>…/health</c> and <c>…/drift</c>: <c>{"device":"…","records":[…]}</c>.
/// Records are kept as raw elements here so that the hub can validate each one on its own: one bad record is
/// dropped, the rest of the batch is stored.
/// </summary>
public sealed class TelemetryBatch
{
    /// <summary>Must equal the device level of the topic the batch came on.</summary>
    [JsonRequired]
    public string Device { get; set; } = "";

    [JsonRequired]
    public List<JsonElement> Records { get; set; } = [];
}

/// <summary>
/// One stored-and-forwarded record: <c>{"boot","seq","class","at","data"}</c>. (<see cref="Boot"/>, <see cref="Seq"/>)
/// identify it within its class (the hub stores it exactly once); <see cref="At"/> is when the device produced it
/// (Unix milliseconds, the device's clock); <see cref="Data"/> is the class's payload
/// (<see cref="PredictionRecord"/>, <see cref="AlertRecord"/>, <see cref="Health.HealthReport"/>, <see cref="Drift.DriftReport"/>).
/// </summary>
public sealed class WireRecord
{
    [JsonRequired]
    public string Boot { get; set; } = "";

    [JsonRequired]
    public long Seq { get; set; }

    /// <summary><c>alert</c>, <c>health</c>, <c>drift</c> or <c>telemetry</c> (<see cref="RecordClass"/> in lower case).</summary>
    [JsonRequired]
    public string Class { get; set; } = "";

    [JsonRequired]
    public long At { get; set; }

    [JsonRequired]
    public JsonElement Data { get; set; }
}

/// <summary>A prediction as the agent records it (telemetry class; also one line of the agent's result log).</summary>
public sealed class PredictionRecord
{
    /// <summary>The window's sequence number within the boot.</summary>
    public long Seq { get; set; }

    /// <summary>End of the window, seconds since the pipeline started.</summary>
    public double T { get; set; }

    public string Model { get; set; } = "";
    public string? Label { get; set; }
    public double Score { get; set; }
    public bool? Anomaly { get; set; }

    /// <summary>Class probabilities by label (classifiers).</summary>
    public Dictionary<string, double>? Probs { get; set; }

    /// <summary>Raw output values (regression, anomaly scores).</summary>
    public List<double>? Values { get; set; }

    [JsonPropertyName("latency_ms")]
    public double LatencyMs { get; set; }
}

/// <summary>
/// An alert: a rule switching on or off (<c>kind: rule</c>), a sensor failing or recovering (<c>sensor</c>), an online
/// drift detector firing (<c>drift</c>), or whatever a newer agent adds (kept as it came).
/// </summary>
public sealed class AlertRecord
{
    [JsonRequired]
    public string Kind { get; set; } = "";

    public string? Rule { get; set; }
    public string? State { get; set; }
    public int? Pin { get; set; }
    public string? Label { get; set; }
    public double? Score { get; set; }
    public long? Sequence { get; set; }
    public string? Sensor { get; set; }
    public string? Error { get; set; }
    public string? Detector { get; set; }
    public string? Output { get; set; }
    public string? Direction { get; set; }
    public DateTimeOffset? At { get; set; }
    public string? Model { get; set; }
    public string? Version { get; set; }
}

/// <summary><c>edgeml/{dev}/status</c> (retained): <c>online</c> with the boot id at connect; <c>offline</c> as the Last Will.</summary>
public sealed class StatusMessage
{
    [JsonRequired]
    public string State { get; set; } = "";

    public string? Boot { get; set; }

    /// <summary>Unix milliseconds, the device's clock.</summary>
    public long? At { get; set; }
}
