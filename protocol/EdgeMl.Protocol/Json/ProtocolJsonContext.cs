using System.Text.Json.Serialization;
using EdgeMl.Protocol.Enrollment;
using EdgeMl.Protocol.Health;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.Protocol.Json;

/// <summary>The one source-generated JSON context for every wire message and the manifest (AOT-safe).</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    ReadCommentHandling = System.Text.Json.JsonCommentHandling.Skip,
    AllowTrailingCommas = true,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow)]
[JsonSerializable(typeof(ModelManifest))]
[JsonSerializable(typeof(HealthReport))]
[JsonSerializable(typeof(EnrollmentClaim))]
[JsonSerializable(typeof(DesiredModel))]
[JsonSerializable(typeof(ReportedState))]
[JsonSerializable(typeof(DeviceCredentials))]
public sealed partial class ProtocolJsonContext : JsonSerializerContext;
