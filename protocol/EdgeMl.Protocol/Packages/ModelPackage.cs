using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using EdgeMl.Protocol.Json;

namespace EdgeMl.Protocol.Packages;

/// <summary>
/// An <c>.edgepkg</c>: a zip holding <c>manifest.json</c>, <c>model.onnx</c> and optionally a detached
/// signature over the manifest. Opening checks the container, the manifest and the model's SHA-256;
/// checking the manifest against the model's real inputs and outputs needs an inference engine and
/// happens in the agent.
/// </summary>
public sealed class ModelPackage
{
    public const string ModelEntryName = "model.onnx";
    public const string ManifestEntryName = "manifest.json";
    public const string SignatureEntryName = "manifest.sig";

    private ModelPackage(string source, ModelManifest manifest, byte[] manifestBytes, byte[] modelBytes, byte[]? signature)
    {
        Source = source;
        Manifest = manifest;
        ManifestBytes = manifestBytes;
        ModelBytes = modelBytes;
        Signature = signature;
    }

    /// <summary>Where the package came from (a path), for messages.</summary>
    public string Source { get; }
    public ModelManifest Manifest { get; }
    /// <summary>The manifest exactly as stored: signatures are over these bytes.</summary>
    public byte[] ManifestBytes { get; }
    public byte[] ModelBytes { get; }
    public byte[]? Signature { get; }

    public static ModelPackage Open(string path)
    {
        if (!File.Exists(path))
        {
            throw new ModelPackageException($"model package '{path}' does not exist");
        }

        try
        {
            using var stream = File.OpenRead(path);
            return Read(stream, path);
        }
        catch (IOException e) when (e is not FileNotFoundException)
        {
            throw new ModelPackageException($"model package '{path}' cannot be read: {e.Message}", e);
        }
    }

    /// <summary>Largest <c>manifest.json</c> a package may hold (bytes, inflated).</summary>
    public const int MaxManifestBytes = 1024 * 1024;

    /// <summary>Largest <c>manifest.sig</c> (bytes, inflated).</summary>
    public const int MaxSignatureBytes = 16 * 1024;

    /// <summary>Largest model file when the manifest does not give its size (bytes, inflated; a .NET array's limit).</summary>
    public const long MaxModelBytes = int.MaxValue - 64;

    public static ModelPackage Read(Stream stream, string source) => Read(stream, source, trusted: null);

    /// <summary>
    /// Reads a package that must be signed by one of <paramref name="trusted"/>: the signature is checked over the
    /// manifest's raw bytes before the manifest is parsed (see <see cref="OpenSigned"/>).
    /// </summary>
    /// <exception cref="ModelPackageException">Not a package, not signed by a trusted key, or invalid; the message says which.</exception>
    public static ModelPackage ReadSigned(Stream stream, string source, IReadOnlyCollection<System.Security.Cryptography.ECDsa> trusted) => Read(stream, source, trusted);

    /// <summary>
    /// Opens a package that must be signed by one of <paramref name="trusted"/>, in the order that keeps an attacker's
    /// bytes away from every parser: entry sizes capped while inflating (a zip bomb is refused, not expanded), the
    /// signature checked over the manifest's raw bytes, and only then the manifest parsed and the model inflated (capped
    /// at the size the signed manifest gives) and hashed. Throws <see cref="ModelPackageException"/> with the reason.
    /// </summary>
    public static ModelPackage OpenSigned(string path, IReadOnlyCollection<System.Security.Cryptography.ECDsa> trusted)
    {
        try
        {
            using var stream = File.OpenRead(path);
            return Read(stream, path, trusted);
        }
        catch (IOException e) when (e is not FileNotFoundException)
        {
            throw new ModelPackageException($"model package '{path}' cannot be read: {e.Message}", e);
        }
    }

    private static ModelPackage Read(Stream stream, string source, IReadOnlyCollection<System.Security.Cryptography.ECDsa>? trusted)
    {
        ZipArchive zip;
        try
        {
            zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
        }
        catch (InvalidDataException e)
        {
            throw new ModelPackageException(
                $"model package '{source}' is not a valid .edgepkg (zip) file — truncated or corrupted? ({e.Message})", e);
        }

        using (zip)
        {
            var manifestBytes = ReadEntry(zip, ManifestEntryName, source, required: true, MaxManifestBytes)!;
            var signature = ReadEntry(zip, SignatureEntryName, source, required: false, MaxSignatureBytes);
            if (trusted is not null)
            {
                var check = PackageSignature.Verify(source, manifestBytes, signature, trusted);
                if (!check.Valid) throw new ModelPackageException($"refused: {check.Message}");
            }

            var manifest = ParseManifest(manifestBytes, $"{source}!{ManifestEntryName}");
            var modelEntry = string.IsNullOrEmpty(manifest.Model.File) ? ModelEntryName : manifest.Model.File;
            var cap = manifest.Model.SizeBytes > 0 ? Math.Min(manifest.Model.SizeBytes, MaxModelBytes) : MaxModelBytes;
            var modelBytes = ReadEntry(zip, modelEntry, source, required: true, cap)!;

            if (manifest.Model.SizeBytes != 0 && manifest.Model.SizeBytes != modelBytes.LongLength)
            {
                throw new ModelPackageException(
                    $"model package '{source}': {modelEntry} is {modelBytes.LongLength} bytes but manifest model.sizeBytes says {manifest.Model.SizeBytes}");
            }

            var actual = Sha256Hex(modelBytes);
            if (!string.Equals(actual, manifest.Model.Sha256, StringComparison.OrdinalIgnoreCase))
            {
                throw new ModelPackageException(
                    $"model package '{source}': SHA-256 of {modelEntry} is {actual} but manifest model.sha256 says '{manifest.Model.Sha256}' — the package is corrupted or was altered");
            }

            return new ModelPackage(source, manifest, manifestBytes, modelBytes, signature);
        }
    }

    /// <summary>Parses and validates a manifest; <paramref name="source"/> names it in errors.</summary>
    public static ModelManifest ParseManifest(ReadOnlySpan<byte> json, string source)
    {
        ModelManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize(json, ManifestJsonContext.Default.ModelManifest);
        }
        catch (JsonException e)
        {
            var where = e.Path is null ? "" : $" at {e.Path}";
            var line = e.LineNumber is null ? "" : $" (line {e.LineNumber + 1})";
            throw new ModelPackageException($"{source}: invalid manifest JSON{where}{line}: {FirstSentence(e.Message)}", e);
        }

        if (manifest is null)
        {
            throw new ModelPackageException($"{source}: manifest is empty (null)");
        }

        // RespectNullableAnnotations covers properties, not list elements: "inputs": [null] is caught here.
        var nulls = NullElements(manifest);
        if (nulls.Count > 0)
        {
            throw new ModelPackageException($"{source}: invalid manifest: {string.Join("; ", nulls.Select(n => $"{n} is null"))}");
        }

        var errors = ManifestValidator.Validate(manifest);
        if (errors.Count > 0)
        {
            throw new ModelPackageException($"{source}: invalid manifest: {string.Join("; ", errors)}");
        }

        return manifest;
    }

    private static List<string> NullElements(ModelManifest m)
    {
        var found = new List<string>();
        void Check<T>(IEnumerable<T?> items, string path)
            where T : class
        {
            var i = 0;
            foreach (var item in items)
            {
                if (item is null) found.Add($"{path}[{i}]");
                i++;
            }
        }

        Check(m.Inputs, "inputs");
        Check(m.Outputs, "outputs");
        Check(m.State, "state");
        Check(m.Constants, "constants");
        for (var i = 0; i < m.Inputs.Count; i++)
        {
            if (m.Inputs[i]?.Source is { } src) Check(src.Channels, $"inputs[{i}].source.channels");
        }

        for (var i = 0; i < m.Outputs.Count; i++)
        {
            if (m.Outputs[i]?.Labels is { } labels) Check(labels, $"outputs[{i}].labels");
        }

        if (m.Baseline is { } b)
        {
            Check(b.Features, "baseline.features");
            Check(b.Outputs, "baseline.outputs");
        }

        return found;
    }

    /// <summary>Writes a package, filling in the model's SHA-256 and size in the manifest.</summary>
    public static void Write(string path, ModelManifest manifest, byte[] modelBytes, byte[]? signature = null)
    {
        manifest.Model.File = ModelEntryName;
        manifest.Model.Sha256 = Sha256Hex(modelBytes);
        manifest.Model.SizeBytes = modelBytes.LongLength;
        var manifestBytes = SerializeManifest(manifest);

        var tmp = path + ".tmp";
        using (var stream = File.Create(tmp))
        using (var zip = new ZipArchive(stream, ZipArchiveMode.Create))
        {
            WriteEntry(zip, ManifestEntryName, manifestBytes);
            WriteEntry(zip, ModelEntryName, modelBytes);
            if (signature is not null)
            {
                WriteEntry(zip, SignatureEntryName, signature);
            }
        }

        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Writes a package from its parts as they are (the manifest's bytes untouched: a signature covers them).</summary>
    public static void WriteRaw(string path, byte[] manifestBytes, byte[] modelBytes, byte[]? signature)
    {
        var tmp = path + ".tmp";
        using (var stream = File.Create(tmp))
        using (var zip = new ZipArchive(stream, ZipArchiveMode.Create))
        {
            WriteEntry(zip, ManifestEntryName, manifestBytes);
            WriteEntry(zip, ModelEntryName, modelBytes);
            if (signature is not null) WriteEntry(zip, SignatureEntryName, signature);
        }

        File.Move(tmp, path, overwrite: true);
    }

    public static byte[] SerializeManifest(ModelManifest manifest) =>
        JsonSerializer.SerializeToUtf8Bytes(manifest, ManifestJsonContext.Default.ModelManifest);

    public static string Sha256Hex(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(SHA256.HashData(data));

    private static void WriteEntry(ZipArchive zip, string name, byte[] data)
    {
        // Fixed timestamp: the same inputs give a byte-identical package.
        var entry = zip.CreateEntry(name, CompressionLevel.Optimal);
        entry.LastWriteTime = new DateTimeOffset(2020, 1, 1, 0, 0, 0, TimeSpan.Zero);
        using var s = entry.Open();
        s.Write(data);
    }

    /// <summary>Inflates an entry, refusing it as soon as it passes <paramref name="max"/> bytes (whatever its header claims).</summary>
    private static byte[]? ReadEntry(ZipArchive zip, string name, string source, bool required, long max)
    {
        var entry = zip.GetEntry(name);
        if (entry is null)
        {
            return required
                ? throw new ModelPackageException($"model package '{source}' has no '{name}' entry")
                : null;
        }

        if (entry.Length > max)
        {
            throw new ModelPackageException($"model package '{source}': entry '{name}' says it inflates to {entry.Length} bytes; at most {max} are allowed");
        }

        try
        {
            using var s = entry.Open();
            using var ms = new MemoryStream(entry.Length > 0 && entry.Length <= max ? (int)entry.Length : 0);
            var buffer = new byte[81920];
            int n;
            while ((n = s.Read(buffer)) > 0)
            {
                if (ms.Length + n > max)
                {
                    throw new ModelPackageException($"model package '{source}': entry '{name}' inflates beyond {max} bytes (a zip bomb?); refused");
                }

                ms.Write(buffer, 0, n);
            }

            return ms.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new ModelPackageException($"model package '{source}': entry '{name}' is corrupted ({e.Message})", e);
        }
    }

    private static string FirstSentence(string message)
    {
        var i = message.IndexOf(". Path:", StringComparison.Ordinal);
        return i > 0 ? message[..i] : message;
    }
}
