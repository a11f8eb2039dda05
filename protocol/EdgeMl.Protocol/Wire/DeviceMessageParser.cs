using System.Buffers;
using System.Text.Json;
using EdgeMl.Protocol.Drift;
using EdgeMl.Protocol.Health;
using EdgeMl.Protocol.Json;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.Protocol.Wire;

/// <summary>
/// Bounds on what one device may send; anything over them is refused with a reason. The defaults are far above what
/// the agent sends (batches of 200 records of about 300 bytes; drift reports of a few KB a feature).
/// </summary>
public sealed record WireLimits
{
    /// <summary>Records in one batch (the agent's <c>Agent:Hub:BatchSize</c> default is 200).</summary>
    public int MaxRecordsPerBatch { get; init; } = 1000;

    /// <summary>Bytes of one record's <c>data</c> (telemetry, alert, health).</summary>
    public int MaxRecordBytes { get; init; } = 64 * 1024;

    /// <summary>Bytes of one drift report (a sketch per feature, ≤ 4 KB each, and the baseline).</summary>
    public int MaxDriftRecordBytes { get; init; } = 1024 * 1024;

    /// <summary>Characters of an identifier: boot id, model name, label, sensor name.</summary>
    public int MaxNameLength { get; init; } = 128;

    /// <summary>Characters of free text: an error message, a reason.</summary>
    public int MaxTextLength { get; init; } = 4096;

    /// <summary>Entries of a list or map in a record (features, labels, sensors, output values).</summary>
    public int MaxItems { get; init; } = 4096;

    /// <summary>Distinct boot ids in one batch (a backlog spans a few restarts; each new boot id is state the hub keeps).</summary>
    public int MaxBootsPerBatch { get; init; } = 16;

    /// <summary>Largest sequence number (2^53: exact in every JSON reader).</summary>
    public long MaxSeq { get; init; } = 1L << 53;

    public static WireLimits Default { get; } = new();
}

/// <summary>Why a device message or record was refused: a stable <see cref="Reason"/> (counted per device) and a human <see cref="Detail"/>.</summary>
public sealed class WireFormatException(string reason, string detail, Exception? inner = null) : FormatException(detail, inner)
{
    /// <summary>One of: <c>json</c>, <c>envelope</c>, <c>device-mismatch</c>, <c>batch-too-large</c>, <c>record</c>, <c>boot</c>,
    /// <c>seq</c>, <c>class</c>, <c>class-topic</c>, <c>at</c>, <c>too-large</c>, <c>data</c>, <c>limits</c>.</summary>
    public string Reason { get; } = reason;
}

/// <summary>A record that passed every check, with its data as the device sent it (unknown fields kept).</summary>
public readonly record struct ValidRecord(string Boot, long Seq, RecordClass Class, long At, string Data);

/// <summary>A record (or a whole payload, <see cref="Index"/> = -1) refused, with its reason.</summary>
public readonly record struct RejectedRecord(int Index, string Reason, string Detail);

/// <summary>What a batch held: the records to store and the ones refused.</summary>
public sealed class BatchParse
{
    public List<ValidRecord> Records { get; } = [];
    public List<RejectedRecord> Rejected { get; } = [];
}

/// <summary>
/// Parses and validates what a device sends — batches, status, update reports — into typed protocol records, and
/// what the hub sends a device (desired state). Nothing here throws anything but <see cref="WireFormatException"/>
/// for bad input: types, lengths, ranges and counts are checked (<see cref="WireLimits"/>), unknown fields skipped.
/// </summary>
public static class DeviceMessageParser
{
    /// <summary>
    /// A batch from <c>edgeml/{device}/{topic}</c> (<paramref name="topic"/>: <c>tele</c>, <c>health</c> or <c>drift</c>).
    /// A bad envelope refuses the whole payload (one rejection with index -1); a bad record refuses only itself.
    /// </summary>
    public static BatchParse ParseBatch(string device, string topic, ReadOnlySequence<byte> payload, WireLimits? limits = null)
    {
        limits ??= WireLimits.Default;
        var result = new BatchParse();
        try
        {
            CheckTokens(payload);
        }
        catch (WireFormatException e)
        {
            result.Rejected.Add(new RejectedRecord(-1, e.Reason, e.Message));
            return result;
        }

        TelemetryBatch batch;
        try
        {
            var reader = new Utf8JsonReader(payload);
            batch = JsonSerializer.Deserialize(ref reader, ProtocolJsonContext.Default.TelemetryBatch)
                    ?? throw new WireFormatException("envelope", "the payload is JSON null, not a batch");
        }
        catch (JsonException e)
        {
            result.Rejected.Add(new RejectedRecord(-1, e.Path is null || e.Path == "$" ? "json" : "envelope", $"not a batch ({e.Message})"));
            return result;
        }
        catch (Exception e) when (IsBadInput(e))
        {
            result.Rejected.Add(new RejectedRecord(-1, "json", $"not a batch ({e.Message})"));
            return result;
        }
        catch (WireFormatException e)
        {
            result.Rejected.Add(new RejectedRecord(-1, e.Reason, e.Message));
            return result;
        }

        if (batch.Device != device)
        {
            result.Rejected.Add(new RejectedRecord(-1, "device-mismatch", $"batch names device '{Clip(batch.Device, 64)}' but came on device {device}'s topic"));
            return result;
        }

        if (batch.Records.Count > limits.MaxRecordsPerBatch)
        {
            result.Rejected.Add(new RejectedRecord(-1, "batch-too-large", $"{batch.Records.Count} records in one batch; at most {limits.MaxRecordsPerBatch}"));
            return result;
        }

        var boots = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < batch.Records.Count; i++)
        {
            try
            {
                var record = ParseRecord(batch.Records[i], topic, limits);
                if (boots.Add(record.Boot) && boots.Count > limits.MaxBootsPerBatch)
                {
                    boots.Remove(record.Boot);
                    throw new WireFormatException("boot", $"more than {limits.MaxBootsPerBatch} boot ids in one batch");
                }

                result.Records.Add(record);
            }
            catch (WireFormatException e)
            {
                result.Rejected.Add(new RejectedRecord(i, e.Reason, $"records[{i}]: {e.Message}"));
            }
            catch (Exception e) when (IsBadInput(e))
            {
                // Bytes the reader let through but cannot turn into text (invalid UTF-8 inside a value), and the like.
                result.Rejected.Add(new RejectedRecord(i, "data", $"records[{i}]: {e.Message}"));
            }
        }

        return result;
    }

    private static ValidRecord ParseRecord(JsonElement element, string topic, WireLimits limits)
    {
        WireRecord r;
        try
        {
            r = element.Deserialize(ProtocolJsonContext.Default.WireRecord) ?? throw new WireFormatException("record", "null instead of a record");
        }
        catch (JsonException e)
        {
            throw new WireFormatException("record", $"not a record {{boot, seq, class, at, data}} ({e.Message})", e);
        }

        if (!IsName(r.Boot, limits.MaxNameLength)) throw new WireFormatException("boot", $"boot id '{Clip(r.Boot, 64)}' is not 1-{limits.MaxNameLength} of A-Z a-z 0-9 . _ -");
        if (r.Seq < 1 || r.Seq > limits.MaxSeq) throw new WireFormatException("seq", $"seq {r.Seq} is outside 1..{limits.MaxSeq}");
        // Any time a DateTimeOffset holds (years 1 to 9999): a clock before 1970 (an RTC that lost its battery) is the
        // device's data too; the hub stores and flags it as implausible rather than dropping it.
        if (r.At < -62135596800000 || r.At > 253402300799999) throw new WireFormatException("at", $"at {r.At} is not a time in Unix milliseconds (years 1 to 9999)");
        RecordClass cls = r.Class switch
        {
            "alert" => RecordClass.Alert,
            "health" => RecordClass.Health,
            "drift" => RecordClass.Drift,
            "telemetry" => RecordClass.Telemetry,
            _ => throw new WireFormatException("class", $"class '{Clip(r.Class, 32)}' is not alert, health, drift or telemetry"),
        };
        var expected = cls switch { RecordClass.Health => "health", RecordClass.Drift => "drift", _ => "tele" };
        if (topic != expected) throw new WireFormatException("class-topic", $"a {r.Class} record belongs on '{expected}', not '{topic}'");

        var raw = r.Data.GetRawText();
        var max = cls == RecordClass.Drift ? limits.MaxDriftRecordBytes : limits.MaxRecordBytes;
        if (raw.Length > max) throw new WireFormatException("too-large", $"data is {raw.Length} bytes; a {r.Class} record may have {max}");
        try
        {
            switch (cls)
            {
                case RecordClass.Telemetry:
                    Check(r.Data.Deserialize(ProtocolJsonContext.Default.PredictionRecord), limits);
                    break;
                case RecordClass.Alert:
                    Check(r.Data.Deserialize(ProtocolJsonContext.Default.AlertRecord), limits);
                    break;
                case RecordClass.Health:
                    Check(r.Data.Deserialize(ProtocolJsonContext.Default.HealthReport), limits);
                    break;
                case RecordClass.Drift:
                    Check(r.Data.Deserialize(CompactJsonContext.Default.DriftReport), limits);
                    break;
            }
        }
        catch (JsonException e)
        {
            throw new WireFormatException("data", $"data of a {r.Class} record: {e.Message}", e);
        }

        return new ValidRecord(r.Boot, r.Seq, cls, r.At, raw);
    }

    /// <summary><c>edgeml/{dev}/status</c>: state <c>online</c> or <c>offline</c>, an optional boot id.</summary>
    public static StatusMessage ParseStatus(ReadOnlySequence<byte> payload, WireLimits? limits = null)
    {
        limits ??= WireLimits.Default;
        var s = Deserialize(payload, ProtocolJsonContext.Default.StatusMessage, "status");
        if (s.State is not ("online" or "offline")) throw new WireFormatException("data", $"status state '{Clip(s.State, 32)}' is not online or offline");
        if (s.Boot is not null && !IsName(s.Boot, limits.MaxNameLength)) throw new WireFormatException("boot", $"boot id '{Clip(s.Boot, 64)}' is not valid");
        return s;
    }

    /// <summary><c>edgeml/{dev}/state/reported</c>: where the device is with a model update.</summary>
    public static ReportedState ParseReported(ReadOnlySequence<byte> payload, WireLimits? limits = null)
    {
        limits ??= WireLimits.Default;
        var r = Deserialize(payload, CompactJsonContext.Default.ReportedState, "reported state");
        Text(r.Phase, limits.MaxNameLength, "phase");
        Text(r.Name, limits.MaxNameLength, "name");
        Text(r.Version, limits.MaxNameLength, "version");
        Text(r.Reason, limits.MaxTextLength, "reason");
        Text(r.Active, limits.MaxNameLength * 2, "active");
        Text(r.Previous, limits.MaxNameLength * 2, "previous");
        Text(r.Rollout, limits.MaxNameLength, "rollout");
        if (r.Phase.Length == 0) throw new WireFormatException("data", "reported state without a phase");
        if (r.Shadow is { } s)
        {
            Count(s.Distribution.Count + s.ActiveDistribution.Count, limits, "shadow distribution");
            foreach (var k in s.Distribution.Keys.Concat(s.ActiveDistribution.Keys)) Text(k, limits.MaxNameLength, "shadow label");
        }

        return r;
    }

    /// <summary>
    /// <c>edgeml/{dev}/state/desired</c> as the agent reads it: name and version are names, the SHA-256 is 64 hex digits
    /// (or empty for a switch back to the other slot), the size is positive and the URL a relative path on the hub.
    /// </summary>
    public static DesiredModel ParseDesired(ReadOnlySequence<byte> payload, WireLimits? limits = null)
    {
        limits ??= WireLimits.Default;
        var d = Deserialize(payload, CompactJsonContext.Default.DesiredModel, "desired state");
        d.Sha256 = d.Sha256.ToLowerInvariant();
        if (!IsName(d.Name, limits.MaxNameLength)) throw new WireFormatException("data", $"desired model name '{Clip(d.Name, 64)}' is not valid");
        if (!IsName(d.Version, limits.MaxNameLength)) throw new WireFormatException("data", $"desired model version '{Clip(d.Version, 64)}' is not valid");
        if (d.Sha256.Length != 0 && (d.Sha256.Length != 64 || !d.Sha256.All(Uri.IsHexDigit)))
        {
            throw new WireFormatException("data", "desired sha256 is not 64 hexadecimal digits");
        }

        if (d.SizeBytes < 0) throw new WireFormatException("data", $"desired sizeBytes {d.SizeBytes} is negative");
        Text(d.Url, limits.MaxTextLength, "url");
        Text(d.Rollout, limits.MaxNameLength, "rollout");
        if (d.ShadowSeconds < 0 || d.ShadowSeconds > 7 * 24 * 3600) throw new WireFormatException("data", $"shadowSeconds {d.ShadowSeconds} is outside 0..604800");
        if (d.WatchSeconds is < 0 or > 7 * 24 * 3600) throw new WireFormatException("data", $"watchSeconds {d.WatchSeconds} is outside 0..604800");
        if (d.MaxLatencyRatio is { } ratio && (ratio < 0 || !double.IsFinite(ratio))) throw new WireFormatException("data", "maxLatencyRatio is negative");
        if (d.MaxErrorRate is { } rate && (rate is < 0 or > 1 || !double.IsFinite(rate))) throw new WireFormatException("data", "maxErrorRate is outside 0..1");
        return d;
    }

    /// <summary>
    /// One pass over the raw JSON before any of it is used: every number must be a finite double (<c>1e999</c> reads as
    /// infinity, which no JSON writer can write back), and no object may name a property twice (readers disagree on
    /// which one counts).
    /// </summary>
    private static void CheckTokens(ReadOnlySequence<byte> payload)
    {
        var reader = new Utf8JsonReader(payload, new JsonReaderOptions { MaxDepth = 64 });
        var objects = new Stack<HashSet<string>?>();
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject:
                        objects.Push(null);
                        break;
                    case JsonTokenType.EndObject:
                        objects.Pop();
                        break;
                    case JsonTokenType.PropertyName:
                        var names = objects.Pop() ?? new HashSet<string>(StringComparer.Ordinal);
                        var name = reader.GetString()!;
                        if (!names.Add(name)) throw new WireFormatException("data", $"property '{Clip(name, 32)}' appears twice in one object");
                        objects.Push(names);
                        break;
                    case JsonTokenType.Number:
                        if (!reader.TryGetDouble(out var d) || !double.IsFinite(d))
                        {
                            throw new WireFormatException("data", $"number {Clip(System.Text.Encoding.UTF8.GetString(reader.HasValueSequence ? reader.ValueSequence.ToArray() : reader.ValueSpan), 32)} is out of range");
                        }

                        break;
                }
            }
        }
        catch (JsonException e)
        {
            throw new WireFormatException("json", $"not JSON ({e.Message})", e);
        }
        catch (Exception e) when (IsBadInput(e))
        {
            throw new WireFormatException("json", $"not JSON ({e.Message})", e);
        }
    }

    private static T Deserialize<T>(ReadOnlySequence<byte> payload, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, string what)
    {
        CheckTokens(payload);
        try
        {
            var reader = new Utf8JsonReader(payload);
            return JsonSerializer.Deserialize(ref reader, type) ?? throw new WireFormatException("data", $"{what}: JSON null");
        }
        catch (JsonException e)
        {
            throw new WireFormatException("json", $"{what}: {e.Message}", e);
        }
        catch (Exception e) when (IsBadInput(e))
        {
            throw new WireFormatException("json", $"{what}: {e.Message}", e);
        }
    }

    /// <summary>What reading hostile JSON can throw besides <see cref="JsonException"/> (invalid UTF-8 in a value, numbers out of range).</summary>
    private static bool IsBadInput(Exception e) => e is (InvalidOperationException or ArgumentException or FormatException or OverflowException) and not WireFormatException;

    private static void Check(PredictionRecord? p, WireLimits limits)
    {
        if (p is null) throw new WireFormatException("data", "telemetry data is null");
        Text(p.Model, limits.MaxNameLength * 2, "model");
        Text(p.Label, limits.MaxNameLength, "label");
        Count((p.Probs?.Count ?? 0) + (p.Values?.Count ?? 0), limits, "outputs");
        if (p.Probs is not null)
        {
            foreach (var k in p.Probs.Keys) Text(k, limits.MaxNameLength, "probs label");
        }
    }

    private static void Check(AlertRecord? a, WireLimits limits)
    {
        if (a is null) throw new WireFormatException("data", "alert data is null");
        if (!IsName(a.Kind, 64)) throw new WireFormatException("data", $"alert kind '{Clip(a.Kind, 32)}' is not a name");
        foreach (var (value, field) in new[] { (a.Rule, "rule"), (a.State, "state"), (a.Label, "label"), (a.Sensor, "sensor"), (a.Detector, "detector"), (a.Output, "output"), (a.Direction, "direction"), (a.Model, "model"), (a.Version, "version") })
        {
            Text(value, limits.MaxNameLength, field);
        }

        Text(a.Error, limits.MaxTextLength, "error");
    }

    private static void Check(HealthReport? h, WireLimits limits)
    {
        if (h is null) throw new WireFormatException("data", "health data is null");
        if (h.Model is { } m)
        {
            Text(m.Name, limits.MaxNameLength, "model.name");
            Text(m.Version, limits.MaxNameLength, "model.version");
            Text(m.Provider, limits.MaxNameLength, "model.provider");
            Text(m.LastInferenceError, limits.MaxTextLength, "model.lastInferenceError");
        }

        Count(h.Sensors.Count, limits, "sensors");
        foreach (var s in h.Sensors)
        {
            if (s is null) throw new WireFormatException("data", "sensors: a null entry");
            Text(s.Name, limits.MaxNameLength, "sensors.name");
            Text(s.State, limits.MaxNameLength, "sensors.state");
            Text(s.LastError, limits.MaxTextLength, "sensors.lastError");
        }

        if (h.Outbox is { } o) Count(o.Depth.Count + o.Dropped.Count + o.Expired.Count, limits, "outbox counters");
    }

    private static void Check(DriftReport? d, WireLimits limits)
    {
        if (d is null) throw new WireFormatException("data", "drift data is null");
        Text(d.Model, limits.MaxNameLength, "model");
        Text(d.Version, limits.MaxNameLength, "version");
        Count(d.Features.Count + d.Outputs.Count + d.Labels.Count + d.Baseline.Features.Count + d.Baseline.Outputs.Count, limits, "features, outputs and labels");
        if (d.Baseline.Features.Concat(d.Baseline.Outputs).Any(b => b is null)) throw new WireFormatException("data", "baseline: a null entry");
        foreach (var f in d.Features.Concat(d.Outputs))
        {
            if (f is null) throw new WireFormatException("data", "features: a null entry");
            CheckSketch(f, limits);
        }

        foreach (var (k, v) in d.Labels)
        {
            Text(k, limits.MaxNameLength, "label");
            if (v < 0 || v > MaxCount) throw new WireFormatException("data", $"label '{Clip(k, 32)}' count {v} is outside 0..{MaxCount}");
        }
    }

    /// <summary>Largest count a sketch may claim (a device at 10 kHz for three years).</summary>
    private const long MaxCount = 1_000_000_000_000;

    /// <summary>
    /// A feature sketch must be one the agent could have made: counts within bounds and adding up, a KLL sketch whose
    /// levels, k and base64url items agree (<see cref="FeatureSketch.FromData"/> reads exactly these), finite moments.
    /// Whether its histogram fits the registry baseline's edges is checked where that baseline is known (the hub's analysis).
    /// </summary>
    private static void CheckSketch(FeatureSketchData f, WireLimits limits)
    {
        var name = Clip(f.Name, 32);
        Text(f.Name, limits.MaxNameLength, "feature name");
        Count(f.Counts.Count + f.KllLevels.Count, limits, $"feature '{name}' counts");
        if (f.Count is < 0 or > MaxCount || f.Missing is < 0 or > MaxCount) throw new WireFormatException("data", $"feature '{name}': count or missing outside 0..{MaxCount}");
        if (f.Counts.Any(c => c < 0) || f.Counts.Sum(c => (decimal)c) > f.Count + f.Missing) throw new WireFormatException("data", $"feature '{name}': histogram counts are negative or add up to more than its count");
        if (f.M2 < 0 || (f.Min is { } mn && f.Max is { } mx && mn > mx)) throw new WireFormatException("data", $"feature '{name}': negative M2, or min above max");
        if (f.KllK is < 8 or > 65_536 || f.KllN < 0 || f.KllN > MaxCount || f.KllLevels.Count > 64 || f.KllLevels.Any(l => l < 0))
        {
            throw new WireFormatException("data", $"feature '{name}': KLL k {f.KllK}, n {f.KllN} or levels out of range");
        }

        var items = f.KllLevels.Sum(l => (long)l);
        if (items > limits.MaxItems * 16L) throw new WireFormatException("data", $"feature '{name}': {items} KLL items");
        byte[] bytes;
        try
        {
            var b64 = f.KllItems.Replace('-', '+').Replace('_', '/');
            bytes = Convert.FromBase64String(b64.PadRight(b64.Length + (4 - b64.Length % 4) % 4, '='));
        }
        catch (FormatException)
        {
            throw new WireFormatException("data", $"feature '{name}': kllItems is not base64url");
        }

        if (bytes.Length != items * sizeof(float)) throw new WireFormatException("data", $"feature '{name}': {bytes.Length} bytes of KLL items for {items} items");
        for (var at = 0; at < bytes.Length; at += sizeof(float))
        {
            if (!float.IsFinite(BitConverter.ToSingle(bytes, at))) throw new WireFormatException("data", $"feature '{name}': a KLL item is not a finite number");
        }
    }

    private static void Text(string? value, int max, string field)
    {
        if (value is not null && value.Length > max) throw new WireFormatException("data", $"{field} is {value.Length} characters; at most {max}");
    }

    private static void Count(int n, WireLimits limits, string what)
    {
        if (n > limits.MaxItems) throw new WireFormatException("data", $"{n} {what}; at most {limits.MaxItems}");
    }

    /// <summary>1..max of A-Z a-z 0-9 . _ - + (identifiers that end up in topics, file names and logs).</summary>
    public static bool IsName(string? s, int max)
    {
        if (string.IsNullOrEmpty(s) || s.Length > max) return false;
        foreach (var c in s)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or '+')) return false;
        }

        return true;
    }

    /// <summary>A record class as it travels: <c>alert</c>, <c>health</c>, <c>drift</c>, <c>telemetry</c>.</summary>
    public static string ClassName(RecordClass c) => c switch
    {
        RecordClass.Alert => "alert",
        RecordClass.Health => "health",
        RecordClass.Drift => "drift",
        _ => "telemetry",
    };

    /// <summary>At most <paramref name="n"/> characters of a device's text for a message, control characters escaped (no log injection).</summary>
    private static string Clip(string? s, int n)
    {
        if (s is null) return "null";
        var cut = s.Length <= n ? s : s[..n] + "…";
        return cut.Any(char.IsControl) ? string.Concat(cut.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString())) : cut;
    }
}
