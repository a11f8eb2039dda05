using CsCheck;
using EdgeMl.Protocol.Text;

namespace EdgeMl.Protocol.Tests;

/// <summary>The one parser each for durations, sizes, hub URLs and model references that every program and the API share.</summary>
public sealed class TextParserTests
{
    [Theory]
    [InlineData("90", 90)]
    [InlineData("90s", 90)]
    [InlineData("10m", 600)]
    [InlineData("1.5h", 5400)]
    [InlineData("7d", 604800)]
    [InlineData(" 24H ", 86400)]
    [InlineData("200ms", 0.2)]
    [InlineData("1500MS", 1.5)]
    public void Durations_read_milliseconds_seconds_minutes_hours_days(string text, double seconds)
    {
        Assert.True(Durations.TryParse(text, out var span, out _));
        Assert.Equal(seconds, span.TotalSeconds);
    }

    [Theory]
    [InlineData("")]
    [InlineData("1e300d")]
    [InlineData("-5h")]
    [InlineData("NaNh")]
    [InlineData("5w")]
    [InlineData("0")]
    [InlineData("h")]
    [InlineData("ms")]
    [InlineData("5mss")]
    [InlineData("0ms")]
    [InlineData("0.5ms")]
    [InlineData("0.0005")]
    public void Durations_refuse_what_is_not_one(string text) => Assert.False(Durations.TryParse(text, out _, out _));

    [Theory]
    [InlineData("65536", 65536)]
    [InlineData("64KiB", 65536)]
    [InlineData("64kb", 64000)]
    [InlineData("512MB", 512_000_000)]
    [InlineData("1.5GiB", 1610612736)]
    [InlineData("1TiB", 1L << 40)]
    public void Sizes_read_si_and_iec_units(string text, long bytes)
    {
        Assert.True(Sizes.TryParse(text, out var value, out var error), error);
        Assert.Equal(bytes, value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("MB")]
    [InlineData("-1MB")]
    [InlineData("2TiB")]
    [InlineData("1e999")]
    [InlineData("5 parsecs")]
    public void Sizes_refuse_what_is_not_one(string text) => Assert.False(Sizes.TryParse(text, out _, out _));

    [Theory]
    [InlineData("vibration-fault@1.2.0", "vibration-fault", "1.2.0")]
    [InlineData("kws_v2.small@2026.11.30-rc1", "kws_v2.small", "2026.11.30-rc1")]
    public void Model_references_are_name_at_version(string text, string name, string version)
    {
        Assert.True(ModelRefs.TryParse(text, out var m, out _));
        Assert.Equal((name, version), (m.Name, m.Version));
        Assert.Equal(text, m.ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("name")]
    [InlineData("@1.0")]
    [InlineData("name@")]
    [InlineData("a/b@1")]
    [InlineData("a@1/2")]
    [InlineData("a\n@1")]
    [InlineData("org@scope@2")]
    [InlineData(" a@1")]
    public void Model_references_refuse_what_is_not_name_at_version(string text) => Assert.False(ModelRefs.TryParse(text, out _, out _));

    [Fact]
    public void A_model_name_alone_is_accepted_only_where_the_version_is_optional()
    {
        Assert.True(ModelRefs.TryParse("vibration-fault", out var m, out _, versionOptional: true));
        Assert.Equal("", m.Version);
        Assert.False(ModelRefs.TryParse("vibration-fault@", out _, out _, versionOptional: true));
    }

    [Theory]
    [InlineData("hub.local", "http://hub.local:8080/")]
    [InlineData("hub.local:80", "http://hub.local/")]
    [InlineData("10.0.0.5:9000", "http://10.0.0.5:9000/")]
    [InlineData("https://hub.example", "https://hub.example/")]
    public void Hub_urls_mean_port_8080_for_a_bare_host(string text, string expected)
    {
        Assert.True(HubUrls.TryParse(text, out var uri, out _));
        Assert.Equal(expected, uri.ToString());
    }

    [Theory]
    [InlineData("ftp://hub")]
    [InlineData("http://user:pw@hub")]
    [InlineData("http://hub/api")]
    [InlineData("http://hub?x=1")]
    [InlineData("a:b:c")]
    [InlineData("")]
    public void Hub_urls_refuse_anything_but_an_http_origin(string text) => Assert.False(HubUrls.TryParse(text, out _, out _));

    [Fact]
    public void No_parser_throws_on_any_text()
    {
        Gen.String[0, 40].Sample(t =>
        {
            _ = Durations.TryParse(t, out _, out var e1) || e1.Length > 0;
            _ = Sizes.TryParse(t, out _, out var e2) || e2.Length > 0;
            _ = ModelRefs.TryParse(t, out _, out var e3) || e3.Length > 0;
            _ = HubUrls.TryParse(t, out _, out var e4) || e4.Length > 0;
        }, iter: 5000, threads: 1);
    }
}
