using System.Security.Cryptography;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using EdgeMl.Protocol.Packages;

using EdgeMl.CommandLine;

namespace EdgeMl.Cli;

/// <summary>Offline commands: signing keys, and signing and verifying model packages.</summary>
public static partial class ModelCommands
{
    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex KeyName();

    /// <summary><c>keys create NAME [--dir DIR]</c>: an ECDSA P-256 key pair, NAME.key (private, mode 600) and NAME.pub.</summary>
    public static void CreateKey(ParsedArgs args, Output output)
    {
        var name = args.Positional.Count >= 1 ? args.Positional[0] : throw new UsageException("keys create NAME: which name?");
        // NAME becomes two file names (NAME.key, NAME.pub) in --dir: a plain name, never a path or a hidden file.
        if (!KeyName().IsMatch(name))
        {
            throw new UsageException($"keys create: the key name '{name}' must be 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'");
        }

        var dir = args.Get("dir") ?? ".";
        Directory.CreateDirectory(dir);
        var privatePath = Path.Combine(dir, name + ".key");
        var publicPath = Path.Combine(dir, name + ".pub");
        if (File.Exists(privatePath)) throw new HubException($"'{privatePath}' exists already: a signing key is not overwritten");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var w = new StreamWriter(new FileStream(privatePath, options))) w.Write(key.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(publicPath, key.ExportSubjectPublicKeyInfoPem());
        output.Line($"key {PackageSignature.KeyId(key)}: private {privatePath} (keep it safe), public {publicPath} (give it to the hub and the devices)");
    }

    /// <summary><c>model sign PKG --key FILE.key [--out FILE]</c>.</summary>
    public static void Sign(ParsedArgs args, Output output)
    {
        var path = args.Positional.Count >= 1 ? args.Positional[0] : throw new UsageException("model sign PKG: which package?");
        var keyPath = args.Get("key") ?? throw new UsageException("model sign needs --key FILE.key (from `edgeml keys create`)");
        var outPath = args.Get("out") ?? path;
        var package = Open(path);
        using var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(File.ReadAllText(keyPath));
        }
        catch (Exception e) when (e is ArgumentException or IOException or CryptographicException)
        {
            throw new HubException($"'{keyPath}' is not an ECDSA private key in PEM: {e.Message}");
        }

        var signature = PackageSignature.Sign(package.ManifestBytes, key);
        ModelPackage.WriteRaw(outPath, package.ManifestBytes, package.ModelBytes, signature);
        output.Line($"signed {package.Manifest.Name}@{package.Manifest.Version} with key {PackageSignature.KeyId(key)} → {outPath}");
    }

    /// <summary><c>model verify PKG --trust FILE.pub|DIR [--trust …]</c>: exit 0 when signed by a trusted key.</summary>
    public static void Verify(ParsedArgs args, Output output)
    {
        var path = args.Positional.Count >= 1 ? args.Positional[0] : throw new UsageException("model verify PKG: which package?");
        var trust = args.All("trust");
        if (trust.Count == 0) throw new UsageException("model verify needs --trust FILE.pub or a directory of them");
        var package = Open(path);
        List<ECDsa> keys;
        try
        {
            keys = PackageSignature.LoadTrusted(trust);
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            throw new HubException(e.Message);
        }

        var check = PackageSignature.Verify(package, keys);
        foreach (var k in keys) k.Dispose();
        if (!check.Valid) throw new HubException(check.Message);
        output.Line($"{package.Manifest.Name}@{package.Manifest.Version}: {check.Message}; model SHA-256 {package.Manifest.Model.Sha256[..16]}… matches");
    }

    /// <summary><c>model push PKG</c>: uploads to the hub's registry with a progress line; the hub checks SHA-256 and signature.</summary>
    public static async Task PushAsync(ParsedArgs args, Output output, TextWriter progressTo)
    {
        using var hub = HubClient.From(args);
        var path = args.Positional.Count >= 1 ? args.Positional[0] : throw new UsageException("model push PKG: which package?");
        var package = Open(path); // a broken package is refused here, before it travels
        long? limit = null;
        try
        {
            limit = (await hub.GetAsync("/api/models/limits").ConfigureAwait(false))["maxPackageBytes"]?.GetValue<long>();
        }
        catch (HubException)
        {
            // An older hub without the call: its answer to the upload says it.
        }

        var size = new FileInfo(path).Length;
        if (size > limit)
        {
            throw new HubException($"{path} is {size / 1048576.0:0.#} MB; the hub accepts packages up to {limit / 1048576.0:0.#} MB (its --MaxPackageMb)");
        }

        var lastPercent = -1;
        JsonNode result;
        try
        {
            result = await hub.PostFileAsync("/api/models", path, (sent, total) =>
            {
                var percent = total == 0 ? 100 : (int)(100 * sent / total);
                if (percent == lastPercent) return;
                lastPercent = percent;
                progressTo.Write($"\rpushing {package.Manifest.Name}@{package.Manifest.Version}: {percent,3}% of {total / 1024.0:0.#} KiB");
            }).ConfigureAwait(false);
        }
        finally
        {
            if (lastPercent >= 0) progressTo.WriteLine(); // an error then starts a line of its own
        }

        if (output.Json(result)) return;
        output.Line($"{result["name"]}@{result["version"]} in the registry: SHA-256 {result["sha256"]!.GetValue<string>()[..16]}…, signed by key {result["keyId"]}, pushed by {result["pushedBy"]}");
    }

    public static async Task ListAsync(ParsedArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var models = (await hub.GetAsync("/api/models").ConfigureAwait(false)).AsArray();
        if (output.Json(models)) return;
        output.Table(["MODEL", "VERSION", "SIZE", "SHA-256", "KEY", "PUSHED BY", "PUSHED"], models.Select(m => new[]
        {
            m!["name"]!.GetValue<string>(), m["version"]!.GetValue<string>(), $"{m["sizeBytes"]!.GetValue<long>() / 1024.0:0.#} KiB",
            m["sha256"]!.GetValue<string>()[..16] + "…", m["keyId"]!.GetValue<string>(), m["pushedBy"]!.GetValue<string>(),
            m["pushedAt"]!.GetValue<DateTimeOffset>().ToLocalTime().ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture),
        }).ToList());
    }

    public static ModelPackage Open(string path)
    {
        try
        {
            return ModelPackage.Open(path);
        }
        catch (ModelPackageException e)
        {
            throw new HubException(e.Message);
        }
    }
}
