using EdgeMl.Agent.Configuration;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.Agent.Inference;

/// <summary>The device refuses a package not signed by one of its trusted keys (when it has any).</summary>
public static class PackageTrust
{
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
