using System.Security.Cryptography;
using System.Text;

namespace EdgeMl.FleetHub.Security;

/// <summary>
/// Enrollment tokens, device passwords and API tokens: 256 random bits, base64url. Only their SHA-256 is
/// stored (a high-entropy secret needs no slow hash), compared in constant time.
/// </summary>
public static class Secrets
{
    public static string New(string prefix) =>
        prefix + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    public static string Hash(string secret) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));

    public static bool Matches(string secret, string storedHash) =>
        CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Hash(secret)), Encoding.ASCII.GetBytes(storedHash));
}
