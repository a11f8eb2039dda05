using System.Text.Json.Serialization;
using EdgeMl.Protocol.Enrollment;
using EdgeMl.Protocol.Health;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.Protocol.Json;

/// <summary>
/// The source-generated JSON context for every wire message (AOT-safe). Unknown fields are skipped: agents in the
/// field are not all updated at once, so a newer peer's extra fields must not make a message malformed. The
/// manifest is read strictly (<see cref="ManifestJsonContext"/>): a misspelt key there is the operator's mistake.
/// A JSON null where the type says a value must be is refused (<c>RespectNullableAnnotations</c>), so no null reaches
/// code that trusts the types.
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    ReadCommentHandling = System.Text.Json.JsonCommentHandling.Skip,
    AllowTrailingCommas = true,
    RespectNullableAnnotations = true)]
[JsonSerializable(typeof(ModelManifest))]
[JsonSerializable(typeof(HealthReport))]
[JsonSerializable(typeof(EnrollmentClaim))]
[JsonSerializable(typeof(DesiredModel))]
[JsonSerializable(typeof(ReportedState))]
[JsonSerializable(typeof(DeviceCredentials))]
[JsonSerializable(typeof(EdgeMl.Protocol.Wire.TelemetryBatch))]
[JsonSerializable(typeof(EdgeMl.Protocol.Wire.WireRecord))]
[JsonSerializable(typeof(EdgeMl.Protocol.Wire.PredictionRecord))]
[JsonSerializable(typeof(EdgeMl.Protocol.Wire.AlertRecord))]
[JsonSerializable(typeof(EdgeMl.Protocol.Wire.StatusMessage))]
[JsonSerializable(typeof(EdgeMl.Protocol.Drift.DriftReport))]
public sealed partial class ProtocolJsonContext : JsonSerializerContext;

/// <summary>
/// The manifest, read strictly: an unknown key is refused (a misspelt <c>normalisation</c> must not be ignored silently),
/// and so is a JSON null where the type says a value must be (null list elements: <see cref="Packages.ModelPackage.ParseManifest"/>).
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    ReadCommentHandling = System.Text.Json.JsonCommentHandling.Skip,
    AllowTrailingCommas = true,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    RespectNullableAnnotations = true)]
[JsonSerializable(typeof(ModelManifest))]
public sealed partial class ManifestJsonContext : JsonSerializerContext;
