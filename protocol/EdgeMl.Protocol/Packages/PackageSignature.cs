using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeMl.Protocol.Packages;

/// <summary>
/// <c>manifest.sig</c>: an ECDSA P-256 / SHA-256 signature over the manifest's exact bytes (which hold the
/// model's SHA-256 and size, so the model is covered too), with the id of the key that made it. Built into .NET
/// and AOT-safe. A key id is the first 16 hex digits of the SHA-256 of the public key (SubjectPublicKeyInfo).
/// </summary>
public static class PackageSignature
{
    public const string Algorithm = "ES256";

    public static string KeyId(ECDsa key) => Convert.ToHexStringLower(SHA256.HashData(key.ExportSubjectPublicKeyInfo()))[..16];

    public static byte[] Sign(byte[] manifestBytes, ECDsa privateKey)
    {
        var signature = privateKey.SignData(manifestBytes, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        var sig = new SignatureFile { Algorithm = Algorithm, KeyId = KeyId(privateKey), Signature = Convert.ToBase64String(signature) };
        return JsonSerializer.SerializeToUtf8Bytes(sig, SignatureJsonContext.Default.SignatureFile);
    }

    /// <summary>Checks a package's signature against trusted public keys; the result says what was wrong, and with which key.</summary>
    public static SignatureCheck Verify(ModelPackage package, IReadOnlyCollection<ECDsa> trusted) =>
        Verify(package.Source, package.ManifestBytes, package.Signature, trusted);

    /// <summary>
    /// Checks <paramref name="signature"/> (the <c>manifest.sig</c> bytes) over the manifest's raw bytes; nothing here
    /// parses the manifest, so it can run before any other byte of an untrusted package is looked at.
    /// </summary>
    public static SignatureCheck Verify(string source, byte[] manifestBytes, byte[]? signature, IReadOnlyCollection<ECDsa> trusted)
    {
        if (signature is null) return new SignatureCheck(false, null, $"{source}: the package is not signed (no {ModelPackage.SignatureEntryName})");
        SignatureFile? sig;
        try
        {
            sig = JsonSerializer.Deserialize(signature, SignatureJsonContext.Default.SignatureFile);
        }
        catch (JsonException e)
        {
            return new SignatureCheck(false, null, $"{source}: {ModelPackage.SignatureEntryName} is not a signature ({e.Message})");
        }

        if (sig is null || sig.Algorithm != Algorithm) return new SignatureCheck(false, sig?.KeyId, $"{source}: signature algorithm '{sig?.Algorithm}' is not {Algorithm}");
        var key = trusted.FirstOrDefault(k => KeyId(k) == sig.KeyId);
        if (key is null) return new SignatureCheck(false, sig.KeyId, $"{source}: signed by key {sig.KeyId}, which is not trusted here");
        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(sig.Signature);
        }
        catch (FormatException)
        {
            return new SignatureCheck(false, sig.KeyId, $"{source}: the signature is not base64");
        }

        return key.VerifyData(manifestBytes, bytes, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence)
            ? new SignatureCheck(true, sig.KeyId, $"signed by trusted key {sig.KeyId}")
            : new SignatureCheck(false, sig.KeyId, $"{source}: the signature by key {sig.KeyId} does not match the manifest (altered after signing?)");
    }

    /// <summary>The PEM texts of the public keys in PEM files or directories of <c>*.pub</c> (what a hub hands devices at enrollment).</summary>
    public static List<string> ReadPems(IEnumerable<string> paths)
    {
        var pems = new List<string>();
        foreach (var key in LoadTrusted(paths))
        {
            using (key) pems.Add(key.ExportSubjectPublicKeyInfoPem());
        }

        return pems;
    }

    /// <summary>Public keys from PEM files (<c>-----BEGIN PUBLIC KEY-----</c>) or directories of <c>*.pub</c> files.</summary>
    public static List<ECDsa> LoadTrusted(IEnumerable<string> paths)
    {
        var keys = new List<ECDsa>();
        foreach (var path in paths)
        {
            var files = Directory.Exists(path) ? Directory.GetFiles(path, "*.pub").Order(StringComparer.Ordinal).ToArray() : [path];
            foreach (var file in files)
            {
                if (!File.Exists(file)) throw new FileNotFoundException($"trusted key '{file}' does not exist", file);
                var key = ECDsa.Create();
                try
                {
                    key.ImportFromPem(File.ReadAllText(file, Encoding.ASCII));
                }
                catch (ArgumentException e)
                {
                    key.Dispose();
                    throw new InvalidDataException($"'{file}' is not an ECDSA public key in PEM: {e.Message}", e);
                }

                keys.Add(key);
            }
        }

        return keys;
    }
}

public sealed record SignatureCheck(bool Valid, string? KeyId, string Message);

public sealed class SignatureFile
{
    public string Algorithm { get; set; } = "";
    public string KeyId { get; set; } = "";
    public string Signature { get; set; } = "";
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(SignatureFile))]
internal sealed partial class SignatureJsonContext : JsonSerializerContext;
