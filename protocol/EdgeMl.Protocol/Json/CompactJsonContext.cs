using System.Text.Json.Serialization;
using EdgeMl.Protocol.Drift;

namespace EdgeMl.Protocol.Json;

/// <summary>Wire messages where size counts (drift reports: ≤ 4 KB a feature): no indentation.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow)]
[JsonSerializable(typeof(DriftReport))]
[JsonSerializable(typeof(FeatureSketchData))]
public sealed partial class CompactJsonContext : JsonSerializerContext;
