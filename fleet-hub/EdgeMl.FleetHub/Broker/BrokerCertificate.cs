using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace EdgeMl.FleetHub.Broker;

/// <summary>The embedded broker's TLS certificate from PEM files (<c>--MqttTlsCertificate</c>, <c>--MqttTlsKey</c>), checked at start.</summary>
public static class BrokerCertificate
{
    public static X509Certificate2 Load(HubSettings settings)
    {
        if (settings.MqttTlsCertificate.Length == 0 || settings.MqttTlsKey.Length == 0)
        {
            throw new InvalidOperationException("MqttTlsPort needs MqttTlsCertificate and MqttTlsKey (PEM files)");
        }

        foreach (var file in new[] { settings.MqttTlsCertificate, settings.MqttTlsKey })
        {
            if (!File.Exists(file)) throw new InvalidOperationException($"TLS: '{file}' does not exist");
        }

        try
        {
            using var pem = X509Certificate2.CreateFromPemFile(settings.MqttTlsCertificate, settings.MqttTlsKey);
            // Re-imported so SslStream gets a key it can use on every platform.
            return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        catch (CryptographicException e)
        {
            throw new InvalidOperationException($"TLS: '{settings.MqttTlsCertificate}' with '{settings.MqttTlsKey}' is not a certificate and its key: {e.Message}", e);
        }
    }
}
