using System.Text.Json;
using System.Text.Json.Serialization;
using EdgeMl.Agent.Configuration;

namespace EdgeMl.Agent.Sync;

/// <summary>
/// Who this device is at its hub: written by <c>edgeml-agent enroll</c> to <c>{data}/identity.json</c>
/// (mode 600, it holds the broker password) and used by <c>run</c> whenever the configuration does not
/// name a broker or device itself.
/// </summary>
public sealed class DeviceIdentity
{
    public string DeviceId { get; set; } = "";
    public string Broker { get; set; } = "";
    public string Password { get; set; } = "";
    /// <summary>The CA (PEM, copied into the data directory at enrollment) the broker's TLS certificate chains to; null: the system's.</summary>
    public string? CaCertificate { get; set; }
    /// <summary>The hub's HTTP address the device enrolled with.</summary>
    public string Hub { get; set; } = "";
    public DateTimeOffset EnrolledAt { get; set; }
    /// <summary>The hub's model-signing public keys (PEM) at enrollment: over-the-air packages must be signed by one of them.</summary>
    public List<string> SigningKeys { get; set; } = [];

    public static string PathIn(string dataDirectory) => System.IO.Path.Combine(dataDirectory, "identity.json");

    public static DeviceIdentity? Read(string dataDirectory)
    {
        var path = PathIn(dataDirectory);
        if (!File.Exists(path)) return null;
        try
        {
            var id = JsonSerializer.Deserialize(File.ReadAllBytes(path), IdentityJsonContext.Default.DeviceIdentity);
            if (id is null || id.DeviceId.Length == 0 || id.Broker.Length == 0)
            {
                throw new ConfigurationException(path, "device identity without deviceId or broker; enroll again (edgeml-agent enroll)");
            }

            return id;
        }
        catch (JsonException e)
        {
            throw new ConfigurationException(path, $"not a device identity ({e.Message}); enroll again (edgeml-agent enroll)");
        }
    }

    /// <summary>Written to a temporary file and renamed: a power cut leaves the old identity or the new one, never half of one.</summary>
    public void Write(string dataDirectory)
    {
        Directory.CreateDirectory(dataDirectory);
        var path = PathIn(dataDirectory);
        var tmp = path + ".tmp";
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var f = new FileStream(tmp, options))
        {
            JsonSerializer.Serialize(f, this, IdentityJsonContext.Default.DeviceIdentity);
            f.Flush(flushToDisk: true);
        }

        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Fills what the configuration left open (broker, device id, credentials) from the enrolled identity.</summary>
    public static void Apply(AgentOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.DataDirectory)) return;
        var hub = options.Hub;
        if (hub.Broker.Length > 0 && hub.DeviceId.Length > 0 && hub.Password is not null && hub.HubUrl is not null && hub.SigningKeys.Count > 0) return;
        var id = Read(options.DataDirectory);
        if (id is null) return;
        if (hub.Broker.Length == 0) hub.Broker = id.Broker;
        if (hub.DeviceId.Length == 0) hub.DeviceId = id.DeviceId;
        if (hub.DeviceId == id.DeviceId && hub.Password is null)
        {
            hub.Username ??= id.DeviceId;
            hub.Password = id.Password;
        }

        // The CA from enrollment is for the hub's HTTPS, and for the broker's TLS when the broker is mqtts://.
        if (hub.Broker == id.Broker && hub.Broker.StartsWith("mqtts://", StringComparison.Ordinal)) hub.CaCertificate ??= id.CaCertificate;
        if (hub.DeviceId == id.DeviceId)
        {
            hub.HubUrl ??= id.Hub;
            hub.HubCaCertificate ??= id.CaCertificate;
            if (hub.SigningKeys.Count == 0) hub.SigningKeys = id.SigningKeys;
        }
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(DeviceIdentity))]
internal sealed partial class IdentityJsonContext : JsonSerializerContext;
