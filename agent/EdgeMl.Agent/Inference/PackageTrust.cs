using EdgeMl.Agent.Configuration;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.Agent.Inference;

/// <summary>The device refuses a package not signed by one of its trusted keys (when it has any).</summary>
public static class PackageTrust
{
    /// <summary>
    /// The keys an over-the-air package may be signed with: the configured key files when there are any (the person who
    /// configured the device pinned them), else the hub's signing keys (PEM) from enrollment. The caller disposes them.
    /// A bad key file is a <see cref="ConfigurationException"/> naming the key.
    /// </summary>
    public static List<System.Security.Cryptography.ECDsa> LoadForUpdates(IReadOnlyList<string> trustedKeys, IReadOnlyList<string> pems, string key)
    {
        List<System.Security.Cryptography.ECDsa> keys;
        try
        {
            keys = PackageSignature.LoadTrusted(trustedKeys);
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            throw new ConfigurationException(key, e.Message);
        }

        foreach (var pem in keys.Count > 0 ? [] : pems)
        {
            var k = System.Security.Cryptography.ECDsa.Create();
            try
            {
                k.ImportFromPem(pem);
                keys.Add(k);
            }
            catch (ArgumentException e)
            {
                k.Dispose();
                throw new InvalidDataException($"a signing key from enrollment is not an ECDSA public key in PEM ({e.Message}); enroll again", e);
            }
        }

        return keys;
    }

    /// <summary>Null when no keys are configured; else the check, which throws when the package is not trusted.</summary>
    public static SignatureCheck? Enforce(ModelPackage package, IReadOnlyList<string> trustedKeys, string key)
    {
        if (trustedKeys.Count == 0) return null;
        List<System.Security.Cryptography.ECDsa> keys;
        try
        {
            keys = PackageSignature.LoadTrusted(trustedKeys);
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            throw new ConfigurationException(key, e.Message);
        }

        try
        {
            var check = PackageSignature.Verify(package, keys);
            return check.Valid ? check : throw new ModelPackageException($"refused: {check.Message}");
        }
        finally
        {
            foreach (var k in keys) k.Dispose();
        }
    }
}
