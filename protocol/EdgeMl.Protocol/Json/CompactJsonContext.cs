using System.Text.Json.Serialization;
using EdgeMl.Protocol.Drift;

namespace EdgeMl.Protocol.Json;

/// <summary>Wire messages where size counts (drift reports: ≤ 4 KB a feature), and the update states (one line each on the wire): no indentation. Unknown fields are skipped (mixed agent versions).</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    RespectNullableAnnotations = true)]
[JsonSerializable(typeof(DriftReport))]
[JsonSerializable(typeof(FeatureSketchData))]
[JsonSerializable(typeof(EdgeMl.Protocol.Packages.ReportedState))]
[JsonSerializable(typeof(EdgeMl.Protocol.Packages.DesiredModel))]
public sealed partial class CompactJsonContext : JsonSerializerContext;
