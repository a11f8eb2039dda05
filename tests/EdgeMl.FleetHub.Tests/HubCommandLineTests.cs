using EdgeMl.TestUtilities;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// <c>edgeml-hub</c>'s command line, run as a process: <c>--help</c> and <c>--version</c> print and exit 0 beside other
/// well-formed settings (the first of them wins); a value a setting can never take (not of its type, out of range, not one
/// of its words, an empty file or directory name) is a usage error (exit 2, one line naming the setting and what it takes);
/// an option's value is never read as a flag; a bad value in a <c>--config</c> file is exit 1 with the same words.
/// </summary>
public sealed class HubCommandLineTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private static string Hub => Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Help_and_version_print_and_exit_0_beside_other_well_formed_settings_and_the_first_given_wins()
    {
        var data = Path.Combine(_dir.Path, "never-created");
        foreach (var args in new[] { new[] { "--version", "--Data", data }, ["--Data", data, "--MqttPort", "1884", "--version"], ["--version", "--help"] })
        {
            var (code, output, err) = HubHarness.Run(Hub, args);
            Assert.True(code == 0, $"{string.Join(' ', args)} → {code}: {err}");
            Assert.Matches(@"^\d+\.\d+\.\d+\S*$", output.Trim());
        }

        foreach (var args in new[] { new[] { "--help", "--Data", data }, ["--Data", data, "-h"], ["-?"], ["--help", "--version"] })
        {
            var (code, output, err) = HubHarness.Run(Hub, args);
            Assert.True(code == 0, $"{string.Join(' ', args)} → {code}: {err}");
            Assert.StartsWith("Usage: edgeml-hub", output, StringComparison.Ordinal);
        }

        Assert.False(Directory.Exists(data)); // nothing started

        // The rest of the line must still be well-formed: a flag does not hide a mistake.
        foreach (var (args, named) in new (string[], string)[]
                 {
                     (["--version", "--MqttPrt", "1"], "'--MqttPrt' is not a setting"), (["--help", "--log-format", "yaml"], "--log-format 'yaml'"),
                     (["--version=1"], "'--version' takes no value"), (["--help=yes"], "'--help' takes no value"),
                 })
        {
            var (code, output, err) = HubHarness.Run(Hub, args);
            Assert.True(code == 2, $"{string.Join(' ', args)} → {code}: {err}");
            Assert.Equal("", output);
            Assert.Contains(named, Assert.Single(err.Trim().Split('\n')), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("--log-format", "yaml", "--log-format 'yaml' is not one of text, json")]
    [InlineData("--log-format", "JSON", "--log-format 'JSON' is not one of text, json")]
    [InlineData("--BrokerDynsec", "yes", "--BrokerDynsec 'yes' is not one of true, false")]
    [InlineData("--MqttPort", "abc", "--MqttPort 'abc' is not a port (0-65535")]
    [InlineData("--MqttTlsPort", "70000", "--MqttTlsPort '70000' is not a port (0-65535")]
    [InlineData("--MetricsPort", "-1", "--MetricsPort '-1' is not a port (0-65535")]
    [InlineData("--RetentionDays", "-1", "--RetentionDays '-1' is not a number of days from 0")]
    [InlineData("--RetentionIntervalMinutes", "0", "--RetentionIntervalMinutes '0' is not a number of minutes from 1")]
    [InlineData("--EnrollTokenHours", "NaN", "--EnrollTokenHours 'NaN' is not a number of hours")]
    [InlineData("--MaxPackageMb", "0", "--MaxPackageMb '0' is not a whole number of MB from 1")]
    [InlineData("--RolloutTickMs", "5", "--RolloutTickMs '5' is not a whole number of milliseconds from 50")]
    [InlineData("--OfflineAfter", "soon", "--OfflineAfter: ")]
    [InlineData("--MqttAddress", "localhost", "--MqttAddress 'localhost' is not an IP address")]
    [InlineData("--Broker", "http://x:1", "--Broker 'http://x:1' is not mqtt://HOST:PORT")]
    [InlineData("--Store", "Hots=nowhere", "--Store is not a PostgreSQL connection string")]
    [InlineData("--shutdownTimeoutSeconds", "soon", "--shutdownTimeoutSeconds 'soon' is not a whole number of seconds")]
    [InlineData("--SharedGroup", "a/b", "--SharedGroup 'a/b' is not a share name")]
    [InlineData("--SharedGroup", "+", "--SharedGroup '+' is not a share name")]
    [InlineData("--SharedGroup", "#", "--SharedGroup '#' is not a share name")]
    [InlineData("--SharedGroup", "  ", "--SharedGroup '  ' is not a share name")]
    [InlineData("--SharedGroup", "hubs a", "--SharedGroup 'hubs a' is not a share name")]
    [InlineData("--SharedGroup", "ggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg", "--SharedGroup 'gggggggggggggggggggggggggggggggggggggggg…' is not a share name")]
    [InlineData("--RetentionDays", "2147483647", "--RetentionDays '2147483647' is not a number of days from 0 (kept for ever) to 36500")]
    [InlineData("--RetentionDays", "abc", "--RetentionDays 'abc' is not a number of days from 0 (kept for ever) to 36500")]
    [InlineData("--RetentionIntervalMinutes", "1e300", "--RetentionIntervalMinutes '1e300' is not a number of minutes from 1 to 10080")]
    public void A_value_its_setting_can_never_take_is_a_usage_error_naming_the_setting_and_what_it_takes(string option, string value, string message)
    {
        foreach (var args in new[] { new[] { "--Data", _dir.Path, option, value }, ["--Data", _dir.Path, $"{option}={value}"] })
        {
            var (code, output, err) = HubHarness.Run(Hub, args);
            Assert.True(code == 2, $"{string.Join(' ', args)} → {code}: {err}");
            Assert.Equal("", output);
            Assert.StartsWith($"edgeml-hub: {message}", Assert.Single(err.Trim().Split('\n')), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("--config", "--config is empty: it takes a JSON file")]
    [InlineData("--Data", "--Data is empty: it takes a directory")]
    [InlineData("--TrustedKeys:0", "--TrustedKeys:0 is empty: it takes a .pub file or a directory of them")]
    [InlineData("--contentRoot", "--contentRoot is empty: it takes a directory")]
    public void An_empty_file_or_directory_name_given_explicitly_is_refused_naming_the_option(string option, string message)
    {
        foreach (var args in new[] { new[] { option, "" }, [$"{option}="], [option, "  "] })
        {
            var (code, output, err) = HubHarness.Run(Hub, args);
            Assert.True(code == 2, $"{string.Join(' ', args)} → {code}: {err}");
            Assert.Equal("", output);
            Assert.StartsWith($"edgeml-hub: {message}", Assert.Single(err.Trim().Split('\n')), StringComparison.Ordinal);
        }
    }

    [Fact]
    public void An_options_value_is_never_read_as_a_help_flag()
    {
        // --config -h: the file "-h" (there is none), not the help text.
        var (code, output, err) = HubHarness.Run(Hub, "--config", "-h");
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Equal("edgeml-hub: --config: '-h' does not exist", err.Trim());

        // --Data -h: the directory "-h"; what follows is still read, and its mistake named.
        (code, output, err) = HubHarness.Run(Hub, "--Data", "-h", "--MqttPort", "abc");
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.StartsWith("edgeml-hub: --MqttPort 'abc'", err.Trim(), StringComparison.Ordinal);
        (code, output, _) = HubHarness.Run(Hub, "--Data=-?", "--log-format", "-h", "--Data", "x");
        Assert.Equal(2, code);
        Assert.Equal("", output);
    }

    [Fact]
    public void A_bad_value_in_the_config_file_is_exit_1_naming_the_setting_and_what_it_takes()
    {
        var file = Path.Combine(_dir.Path, "hub.json");
        foreach (var (json, message) in new[]
                 {
                     ("""{ "Data": "d", "MqttPort": "abc" }""", "--MqttPort 'abc' is not a port (0-65535"),
                     ("""{ "BrokerDynsec": "yes" }""", "--BrokerDynsec 'yes' is not one of true, false"),
                     ("""{ "Data": "" }""", "--Data is empty: it takes a directory"),
                     ("""{ "log-format": "yaml" }""", "--log-format 'yaml' is not one of text, json"),
                     ("""{ "SharedGroup": "edge/hubs" }""", "--SharedGroup 'edge/hubs' is not a share name"),
                 })
        {
            File.WriteAllText(file, json);
            var (code, output, err) = HubHarness.Run(Hub, "--config", file);
            Assert.True(code == 1, $"{json} → {code}: {err}");
            Assert.Equal("", output);
            Assert.StartsWith($"edgeml-hub: {message}", Assert.Single(err.Trim().Split('\n')), StringComparison.Ordinal);
        }
    }
}
