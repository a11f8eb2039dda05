using EdgeMl.FleetHub.Security;
using EdgeMl.FleetHub.Store;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.FleetHub.Apis;

/// <summary>
/// The model registry: operators push signed packages (checked: container, model SHA-256, signature by a key in
/// <c>--TrustedKeys</c>); versions are immutable; packages are served with HTTP range requests so a device can
/// resume a download.
/// </summary>
public static class ModelsApi
{
    public static void MapModelsApi(this WebApplication app)
    {
        var api = app.MapGroup("/api/models");
        api.MapGet("/", (IHubStore store) => TypedResults.Ok(store.Models().OrderBy(m => m.Name, StringComparer.Ordinal).ThenBy(m => m.PushedAt).Select(View).ToList()))
            .RequireRole(ApiAuth.Viewer);
        api.MapGet("/limits", (HubSettings settings) => TypedResults.Ok(new ModelLimits((long)settings.MaxPackageMb << 20))).RequireRole(ApiAuth.Viewer);
        api.MapGet("/{name}/{version}", IResult (string name, string version, IHubStore store) =>
            store.FindModel(name, version) is { } m ? TypedResults.Ok(View(m)) : TypedResults.NotFound(new ApiError($"no model {name}@{version}"))).RequireRole(ApiAuth.Viewer);
        // From the store (a file of the embedded store, or rows of the shared PostgreSQL store: any replica serves any package);
        // the stream is seekable, so Range requests get 206 with just those bytes.
        api.MapGet("/{name}/{version}/package", IResult (string name, string version, IHubStore store) =>
            store.OpenPackage(name, version) is { } package
                ? Results.Stream(package, "application/zip", $"{name}-{version}.edgepkg", enableRangeProcessing: true)
                : TypedResults.NotFound(new ApiError($"no model {name}@{version}"))).RequireRole(ApiAuth.Device);

        api.MapPost("/", async Task<IResult> (HttpRequest request, IHubStore store, HubSettings settings, TimeProvider time) =>
        {
            if (settings.TrustedKeys.Count == 0)
            {
                return TypedResults.BadRequest(new ApiError("this hub trusts no signing keys: start it with --TrustedKeys:0 KEY.pub (or a directory of them)"));
            }

            var max = (long)settings.MaxPackageMb << 20;
            var tooLarge = Results.Json(new ApiError($"a package may be at most {settings.MaxPackageMb} MB (--MaxPackageMb)"), statusCode: StatusCodes.Status413PayloadTooLarge);
            if (request.ContentLength > max) return tooLarge;
            var bytes = new MemoryStream();
            await request.Body.CopyToAsync(bytes).ConfigureAwait(false);
            if (bytes.Length > max) return tooLarge;
            bytes.Position = 0;
            // The signature is checked over the manifest's raw bytes before anything parses them.
            ModelPackage package;
            SignatureCheck check;
            var keys = PackageSignature.LoadTrusted(settings.TrustedKeys);
            try
            {
                package = ModelPackage.ReadSigned(bytes, "the uploaded package", keys);
                check = PackageSignature.Verify(package, keys); // which key signed it, for the registry and the audit trail
            }
            catch (ModelPackageException e)
            {
                return TypedResults.BadRequest(new ApiError(e.Message));
            }
            finally
            {
                foreach (var k in keys) k.Dispose();
            }

            var m = package.Manifest;
            if (!Protocol.Wire.DeviceMessageParser.IsName(m.Name, 128) || !Protocol.Wire.DeviceMessageParser.IsName(m.Version, 128))
            {
                return TypedResults.BadRequest(new ApiError($"model name '{m.Name}' and version '{m.Version}' must each be 1-128 of A-Z a-z 0-9 . _ - + (devices refuse anything else)"));
            }

            var sha = ModelPackage.Sha256Hex(bytes.GetBuffer().AsSpan(0, (int)bytes.Length));
            if (store.FindModel(m.Name, m.Version) is { } existing)
            {
                return existing.PackageSha256 == sha
                    ? TypedResults.Ok(View(existing)) // the same package again: nothing to do
                    : TypedResults.Conflict(new ApiError($"{m.Name}@{m.Version} exists already with other contents (SHA-256 {existing.PackageSha256[..16]}…): versions are immutable, push a new version"));
            }

            var file = Path.Combine("models", Safe(m.Name), $"{Safe(m.Version)}-{sha[..12]}.edgepkg");
            var header = request.Headers.Authorization.ToString();
            var who = store.ApiTokenName(Secrets.Hash(header.Length > 7 ? header[7..].Trim() : "")) is { Length: > 0 } n ? n : "operator";
            var entry = new ModelEntry(m.Name, m.Version, sha, bytes.Length, m.Model.Sha256, check.KeyId ?? "", who, time.GetUtcNow(), file);
            if (!store.AddModel(entry, bytes.GetBuffer().AsMemory(0, (int)bytes.Length))) return TypedResults.Conflict(new ApiError($"{m.Name}@{m.Version} was pushed at the same moment by someone else"));
            store.AddAudit(new AuditEntry(entry.PushedAt, who, "model.push", $"model {m.Name}@{m.Version}",
                $"signed by key {check.KeyId}; package SHA-256 {sha}; {bytes.Length} bytes"));
            return TypedResults.Created($"/api/models/{m.Name}/{m.Version}", View(entry));
        }).RequireRole(ApiAuth.Operator);
    }

    /// <summary><c>GET /api/models/limits</c>: what a push may upload (bytes), for <c>edgeml model push</c> to check first.</summary>
    public sealed record ModelLimits(long MaxPackageBytes);

    private static string Safe(string s) => string.Concat(s.Select(c => char.IsLetterOrDigit(c) || c is '.' or '-' or '_' ? c : '_'));

    private static ModelView View(ModelEntry m) => new(m.Name, m.Version, m.PackageSha256, m.SizeBytes, m.ModelSha256, m.KeyId, m.PushedBy, m.PushedAt);
}

public sealed record ModelView(string Name, string Version, string Sha256, long SizeBytes, string ModelSha256, string KeyId, string PushedBy, DateTimeOffset PushedAt);
