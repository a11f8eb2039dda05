using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace EdgeMl.Agent.Sync;

/// <summary>
/// HTTP to the hub (enrollment, model downloads): never follows a redirect (credentials and downloads stay on the hub's
/// origin), and with <see cref="HubSettings.HubCaCertificate"/> trusts that CA for <c>https://</c> as the broker's TLS does.
/// </summary>
public static class HubHttp
{
    public static HttpClient Create(HubSettings hub, TimeSpan timeout) => Create(hub.HubCaCertificate ?? hub.CaCertificate, timeout);

    /// <param name="caFile">PEM file of the CA(s) the hub's certificate must chain to; null: the system's trust store.</param>
    public static HttpClient Create(string? caFile, TimeSpan timeout)
    {
        var handler = new SocketsHttpHandler { AllowAutoRedirect = false };
        if (caFile is not null)
        {
            if (!File.Exists(caFile)) throw new EdgeMl.Agent.ConfigurationException("Agent:Hub:HubCaCertificate", $"the CA file '{caFile}' does not exist");
            var anchors = new X509Certificate2Collection();
            anchors.ImportFromPemFile(caFile);
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, cert, _, errors) => BrokerTls.Validate(cert, errors, anchors),
            };
        }

        return new HttpClient(handler) { Timeout = timeout };
    }
}
