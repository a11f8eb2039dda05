using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// Who gets in: enrolled devices only, each held to its own topics (checked with mosquitto_pub/mosquitto_sub as
/// third-party clients), revocation, and the HTTP API's viewer/operator roles through the real <c>edgeml</c> CLI.
/// </summary>
public sealed class HubAccessTests : IDisposable
{
    private readonly HubHarness _h = new();

    private string Password(string device) => _h.DevicePassword(device);

    private (int Code, string Out, string Err) Pub(string client, string? password, string topic, string payload, params string[] extra)
    {
        var args = new List<string> { "-p", HubHarness.Str(_h.Mqtt), "-i", client, "-t", topic, "-m", payload, "-q", "1" };
        if (password is not null) args.AddRange(["-u", client, "-P", password]);
        args.AddRange(extra);
        return HubHarness.Run("/usr/bin/mosquitto_pub", [.. args]);
    }

    private (int Code, string Out, string Err) Cli(string? token, params string[] args) =>
        HubHarness.Run(HubHarness.CliDll, [.. args, "--hub", _h.HubUrl, .. token is null ? Array.Empty<string>() : ["--token", token]]);

    [Fact]
    public void Only_enrolled_devices_get_in_and_each_only_under_its_own_topics()
    {
        Assert.True(File.Exists("/usr/bin/mosquitto_pub"), "mosquitto-clients is needed (./build.sh test installs it)");
        _h.StartHub();
        _h.Enroll("cell-a");
        _h.Enroll("cell-b");
        var a = Password("cell-a");
        var batchForB = """{"device":"cell-b","records":[{"boot":"x","seq":1,"class":"telemetry","at":1,"data":{}}]}""";

        // Unknown devices, no credentials, a wrong password, and another device's password: all refused at CONNECT.
        foreach (var (client, password) in new[] { ("ghost", "whatever"), ("cell-a", null), ("cell-a", "dev_wrong"), ("cell-b", a) })
        {
            var (code, _, err) = Pub(client, password, $"edgeml/{client}/tele", "{}");
            Assert.NotEqual(0, code);
            Assert.Matches("Connection Refused: (not authorised|bad user name or password)", err);
        }

        // cell-a writing as cell-b: refused (MQTT 3.1.1 and MQTT 5), nothing stored for cell-b.
        Assert.NotEqual(0, Pub("cell-a", a, "edgeml/cell-b/tele", batchForB).Code);
        Assert.NotEqual(0, Pub("cell-a", a, "edgeml/cell-b/tele", batchForB, "-V", "mqttv5").Code);
        Assert.Equal(0, _h.Records("cell-b"));
        Assert.Equal(2, _h.Get("/api/ingest").GetProperty("refused").GetInt64());

        // Wildcards over the fleet and other devices' topics: every subscription denied.
        foreach (var filter in new[] { "#", "edgeml/+/tele", "edgeml/cell-b/#", "$SYS/#" })
        {
            var (_, _, err) = HubHarness.Run("/usr/bin/timeout", "10", "/usr/bin/mosquitto_sub", "-p", HubHarness.Str(_h.Mqtt), "-i", "cell-a", "-u", "cell-a", "-P", a, "-t", filter, "-C", "1");
            Assert.Contains("All subscription requests were denied", err, StringComparison.Ordinal);
        }

        // Its own subtree works both ways: what cell-a retains under its topics, cell-a reads back.
        // (One connection per device: client id = user name = device id, so the two steps take turns.)
        var reported = """{"phase":"active","name":"m","version":"1.0.0","at":"2026-01-01T00:00:00Z"}""";
        Assert.Equal(0, Pub("cell-a", a, "edgeml/cell-a/state/reported", reported, "-r").Code);
        var (subCode, heard, subErr) = HubHarness.Run("/usr/bin/mosquitto_sub", "-p", HubHarness.Str(_h.Mqtt), "-i", "cell-a", "-u", "cell-a", "-P", a,
            "-t", "edgeml/cell-a/state/#", "-C", "1", "-v", "-W", "10");
        Assert.True(subCode == 0, subErr);
        Assert.Equal($"edgeml/cell-a/state/reported {reported}", heard.Trim());
    }

    [Fact]
    public void A_revoked_device_is_disconnected_at_once_and_cannot_reconnect()
    {
        _h.StartHub();
        using var agent = _h.Agent("drill-1", 0, fast: false);
        HubHarness.Until(() => _h.Records("drill-1") >= 3, "records from the running agent");
        Assert.Equal("online", _h.Device("drill-1").GetProperty("presence").GetString());

        var (code, stdout, err) = Cli(_h.OperatorToken, "devices", "revoke", "drill-1");
        Assert.True(code == 0, err);
        Assert.Contains("revoked", stdout, StringComparison.Ordinal);

        // Disconnected: the Last Will says offline, and nothing more arrives though the agent keeps trying.
        HubHarness.Until(() => _h.Device("drill-1").GetProperty("presence").GetString() == "offline", "presence offline after revocation");
        var stored = _h.Records("drill-1");
        Thread.Sleep(2000);
        Assert.False(agent.HasExited);
        Assert.Equal(stored, _h.Records("drill-1"));
        Assert.Equal("revoked", _h.Device("drill-1").GetProperty("enrollment").GetString());

        var (pubCode, _, pubErr) = Pub("drill-1", Password("drill-1"), "edgeml/drill-1/tele", "{}");
        Assert.NotEqual(0, pubCode);
        Assert.Contains("not authorised", pubErr, StringComparison.OrdinalIgnoreCase);
        agent.Kill();
        agent.WaitForExit();
    }

    [Fact]
    public async Task The_api_needs_a_token_and_viewers_can_read_but_not_change()
    {
        _h.StartHub();
        _h.Enroll("mixer-1", group: "line-a");

        using var anonymous = new HttpClient { BaseAddress = new Uri(_h.HubUrl) };
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/api/devices")).StatusCode);
        anonymous.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "op_not-a-real-token");
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/api/devices")).StatusCode);

        // The operator makes a viewer token with the CLI; the viewer reads, but cannot enroll, revoke or make tokens.
        var (code, created, err) = Cli(_h.OperatorToken, "tokens", "create", "--role", "viewer", "--name", "field-engineer", "--json");
        Assert.True(code == 0, err);
        var viewer = JsonDocument.Parse(created).RootElement.GetProperty("token").GetString()!;

        var (listCode, list, _) = Cli(viewer, "devices", "list", "--json");
        Assert.Equal(0, listCode);
        Assert.Equal("mixer-1", JsonDocument.Parse(list).RootElement[0].GetProperty("id").GetString());

        foreach (var change in new[] { new[] { "devices", "enroll", "mixer-2" }, ["devices", "revoke", "mixer-1"], ["tokens", "create", "--role", "operator"] })
        {
            var (c, _, e) = Cli(viewer, change);
            Assert.Equal(1, c);
            Assert.Contains("needs the 'operator' role", e, StringComparison.Ordinal);
        }

        Assert.Equal("enrolled", _h.Device("mixer-1").GetProperty("enrollment").GetString());
        Assert.Equal(1, _h.Get("/api/devices").GetArrayLength());

        var (noTokenCode, _, noTokenErr) = Cli(null, "devices", "list");
        Assert.Equal(1, noTokenCode);
        Assert.Contains("API token", noTokenErr, StringComparison.Ordinal);
    }

    [Fact]
    public void Enrollment_tokens_work_once_and_an_enrolled_device_is_not_enrolled_twice()
    {
        _h.StartHub();
        var (code, stdout, err) = Cli(_h.OperatorToken, "devices", "enroll", "saw-1", "--group", "line-b", "--tag", "site=berlin", "--tag", "floor=2");
        Assert.True(code == 0, err);
        var token = stdout.Split('\n').Select(l => l.Trim()).Single(l => l.StartsWith("enr_", StringComparison.Ordinal));
        Assert.Contains($"edgeml-agent enroll --hub 127.0.0.1:{_h.Http} --token {token}", stdout, StringComparison.Ordinal);
        Assert.Equal("pending", _h.Device("saw-1").GetProperty("enrollment").GetString());

        var first = HubHarness.Run(HubHarness.AgentDll, "enroll", "--hub", $"127.0.0.1:{_h.Http}", "--token", token, "--data", _h.AgentData("saw-1"));
        Assert.True(first.Code == 0, first.Err);
        Assert.Contains("enrolled as 'saw-1'", first.Out, StringComparison.Ordinal);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_h.AgentData("saw-1"), "identity.json")));
        }

        var status = HubHarness.Run(HubHarness.AgentDll, "status", "--data", _h.AgentData("saw-1"));
        Assert.Matches($@"device\s+saw-1, enrolled .* at http://127\.0\.0\.1:{_h.Http}/ \(broker mqtt://127\.0\.0\.1:{_h.Mqtt}\)", status.Out);

        var again = HubHarness.Run(HubHarness.AgentDll, "enroll", "--hub", $"127.0.0.1:{_h.Http}", "--token", token, "--data", _h.AgentData("saw-1b"));
        Assert.Equal(1, again.Code);
        Assert.Contains("already used or expired", again.Err, StringComparison.Ordinal);

        var twice = Cli(_h.OperatorToken, "devices", "enroll", "saw-1");
        Assert.Equal(1, twice.Code);
        Assert.Contains("already enrolled; revoke it first", twice.Err, StringComparison.Ordinal);

        var bad = Cli(_h.OperatorToken, "devices", "enroll", "saw/1");
        Assert.Equal(1, bad.Code);
        Assert.Contains("not valid", bad.Err, StringComparison.Ordinal);

        var d = _h.Device("saw-1");
        Assert.Equal("enrolled", d.GetProperty("enrollment").GetString());
        Assert.Equal("line-b", d.GetProperty("group").GetString());
        Assert.Equal("berlin", d.GetProperty("tags").GetProperty("site").GetString());
        Assert.True(d.GetProperty("enrolledAt").GetDateTimeOffset() > DateTimeOffset.UtcNow.AddMinutes(-5));
    }

    public void Dispose() => _h.Dispose();
}
