using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using MQTTnet;

namespace EdgeMl.Agent.Sync;

/// <summary>
/// TLS to the broker (<c>mqtts://</c>): the broker's certificate must chain to <see cref="HubSettings.CaCertificate"/>
/// (or to the system's trust store when none is set) and name the host; the device presents its own
/// certificate when one is configured.
/// </summary>
public static class BrokerTls
{
    public static MqttClientTlsOptions Options(HubSettings settings, string host)
    {
        var builder = new MqttClientTlsOptionsBuilder()
            .UseTls()
            .WithTargetHost(host)
            .WithSslProtocols(SslProtocols.Tls12 | SslProtocols.Tls13);
        if (settings.CaCertificate is { } caFile)
        {
            var anchors = new X509Certificate2Collection();
            anchors.ImportFromPemFile(caFile);
            builder = builder.WithCertificateValidationHandler(e => Validate(e.Certificate, e.SslPolicyErrors, anchors));
        }

        if (settings.ClientCertificate is { } certFile && settings.ClientKey is { } keyFile)
        {
            using var pem = X509Certificate2.CreateFromPemFile(certFile, keyFile);
            // Re-imported so the private key is a persisted one SslStream can use on every platform.
            var cert = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
            builder = builder.WithClientCertificates([cert]);
        }

        return builder.Build();
    }

    /// <summary>The chain must end at one of <paramref name="anchors"/>, and the certificate must name the host.</summary>
    public static bool Validate(X509Certificate? certificate, SslPolicyErrors errors, X509Certificate2Collection anchors)
    {
        if (certificate is null || (errors & (SslPolicyErrors.RemoteCertificateNotAvailable | SslPolicyErrors.RemoteCertificateNameMismatch)) != 0) return false;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(anchors);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return chain.Build(leaf);
    }
}
