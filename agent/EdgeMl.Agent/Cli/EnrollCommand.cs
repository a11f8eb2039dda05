using System.Net.Http.Json;
using EdgeMl.Agent.Sync;
using EdgeMl.Protocol.Enrollment;
using EdgeMl.Protocol.Json;

using EdgeMl.CommandLine;

namespace EdgeMl.Agent.Cli;

/// <summary>
/// <c>enroll --hub HOST[:PORT] --token TOKEN --data DIR [--broker mqtt(s)://HOST:PORT] [--ca FILE]</c>: trades the operator's
/// one-time token for this device's identity, broker password and the hub's model-signing keys, stored in the data
/// directory; from then on <c>run --data DIR</c> connects to the hub without naming it. <c>--ca</c> is the CA the hub's
/// HTTPS and MQTT-over-TLS certificates chain to.
/// </summary>
public static class EnrollCommand
{
    /// <summary>
    /// Everything that could still fail after the one-time token is spent is checked before it is: the data directory
    /// can be written, <c>--broker</c> is an MQTT URL, <c>--ca</c> holds a PEM certificate.
    /// </summary>
    private static void CheckBeforeClaiming(string dir, string? broker, string? ca)
    {
        try
        {
            Directory.CreateDirectory(dir);
            var probe = Path.Combine(dir, $".enroll-probe-{Environment.ProcessId}");
            File.WriteAllBytes(probe, [1]);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new ConfigurationException("--data", $"'{dir}' is not a directory this agent can write ({e.GetType().Name})");
        }

        if (broker is not null && (!Uri.TryCreate(broker, UriKind.Absolute, out var b) || b.Scheme is not ("mqtt" or "mqtts") || b.Host.Length == 0))
        {
            throw new ConfigurationException("--broker", $"'{broker}' is not mqtt://HOST:PORT or mqtts://HOST:PORT");
        }

        if (ca is not null)
        {
            var anchors = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
            try
            {
                anchors.ImportFromPemFile(ca);
            }
            catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or IOException or UnauthorizedAccessException)
            {
                anchors.Clear();
            }

            if (anchors.Count == 0) throw new ConfigurationException("--ca", $"'{ca}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        }
    }

    public static async Task<int> RunAsync(ParsedArgs args, CancellationToken ct)
    {
        var hubArg = args.Get("hub") ?? throw new UsageException("enroll needs --hub HOST[:PORT] (the hub's HTTP address)");
        var token = args.Get("token") ?? throw new UsageException("enroll needs --token TOKEN (from `edgeml devices enroll ID`)");
        var dir = args.Get("data") ?? throw new UsageException("enroll needs --data DIR (the agent's Agent:DataDirectory)");
        var brokerOverride = args.Get("broker");
        var ca = args.Get("ca");
        if (ca is not null && !File.Exists(ca)) throw new ConfigurationException("--ca", $"'{ca}' does not exist");
        CheckBeforeClaiming(dir, brokerOverride, ca);

        var hub = HubUri(hubArg);
        if (hub.Scheme == "http")
        {
            Console.Error.WriteLine($"warning: {hub} is plain HTTP: the enrollment token and this device's password travel in clear. " +
                                    "Use https:// with the hub's certificate (docs/security.md).");
        }

        using var http = HubHttp.Create(ca, TimeSpan.FromSeconds(30));
        http.BaseAddress = hub;
        HttpResponseMessage response;
        try
        {
            response = await http.PostAsJsonAsync("/api/enroll", new EnrollmentClaim { Token = token }, ProtocolJsonContext.Default.EnrollmentClaim, ct).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            throw new ConfigurationException("--hub", $"cannot reach the hub at {hub}: {e.Message}");
        }

        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                var body = await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
                throw new ConfigurationException("--token", $"the hub refused enrollment ({(int)response.StatusCode}): {ErrorText(body)}");
            }

            var creds = await response.Content.ReadFromJsonAsync(ProtocolJsonContext.Default.DeviceCredentials, ct).ConfigureAwait(false)
                        ?? throw new InvalidDataException($"{hub}: empty enrollment answer");
            var identity = new DeviceIdentity
            {
                DeviceId = creds.DeviceId,
                Password = creds.Password,
                Broker = brokerOverride ?? creds.Broker
                    ?? (creds.MqttTlsPort > 0 ? $"mqtts://{hub.Host}:{creds.MqttTlsPort}" : creds.MqttPort > 0 ? $"mqtt://{hub.Host}:{creds.MqttPort}" : null)
                    ?? throw new InvalidDataException($"{hub}: the enrollment answer names no broker (no broker, mqttPort or mqttTlsPort); give --broker mqtt://HOST:PORT"),
                Hub = hub.ToString(),
                EnrolledAt = DateTimeOffset.UtcNow,
                SigningKeys = creds.SigningKeys,
            };
            if (ca is not null)
            {
                // A copy beside the identity: the device keeps working when the original moves.
                Directory.CreateDirectory(dir);
                identity.CaCertificate = Path.GetFullPath(Path.Combine(dir, "ca.pem"));
                File.Copy(ca, identity.CaCertificate, overwrite: true);
            }

            identity.Write(dir);
            Console.WriteLine($"enrolled as '{identity.DeviceId}' at {identity.Hub} (broker {identity.Broker}); identity in {DeviceIdentity.PathIn(dir)}");
            Console.WriteLine(identity.SigningKeys.Count > 0
                ? $"model updates must be signed by one of the hub's {identity.SigningKeys.Count} signing key(s)"
                : "warning: the hub handed over no signing keys (it has no --TrustedKeys): over-the-air model updates will be refused");
            Console.WriteLine($"next: edgeml-agent run --config FILE   (with Agent:DataDirectory={dir})");
            return 0;
        }
    }

    /// <summary>The hub answers errors as <c>{"error": "…"}</c>; anything else is shown as it came.</summary>
    private static string ErrorText(string body)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(body);
            return doc.RootElement.TryGetProperty("error", out var e) && e.GetString() is { } text ? text : body;
        }
        catch (System.Text.Json.JsonException)
        {
            return body;
        }
    }

    private static Uri HubUri(string value) =>
        Protocol.Text.HubUrls.TryParse(value, out var uri, out var error) ? uri : throw new ConfigurationException("--hub", error);
}
