using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// The hub treats every byte from a device as untrusted, and decides identities once, at connect: a real hub, real
/// agents, and mosquitto_pub/mosquitto_sub as the hostile third-party clients (issue 10).
/// </summary>
public sealed class TrustBoundaryTests : IDisposable
{
    private readonly HubHarness _h = new();

    private string Password(string device) => _h.DevicePassword(device);

    private (int Code, string Out, string Err) Pub(string client, string topic, string payload, params string[] extra) =>
        HubHarness.Run("/usr/bin/mosquitto_pub", ["-p", HubHarness.Str(_h.Mqtt), "-i", client, "-u", client, "-P", Password(client), "-t", topic, "-m", payload, "-q", "1", .. extra]);

    private static string Record(long seq, string cls, string data, string boot = "b1") =>
        $$"""{"boot":"{{boot}}","seq":{{seq}},"class":"{{cls}}","at":{{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}},"data":{{data}}}""";

    private static string Batch(string device, params string[] records) => $$"""{"device":"{{device}}","records":[{{string.Join(',', records)}}]}""";

    private const string Prediction = """{"seq":1,"t":0.5,"model":"m@1","label":"healthy","score":0.9,"probs":{"healthy":0.9},"latency_ms":0.2}""";

    [Fact]
    public void A_poisoned_batch_from_one_device_is_dropped_and_counted_while_every_other_device_keeps_storing()
    {
        Assert.True(File.Exists("/usr/bin/mosquitto_pub"), "mosquitto-clients is needed (./build.sh test installs it)");
        _h.StartHub();
        _h.Enroll("bad-1");
        var good = new[] { "good-1", "good-2", "good-3" }.Select(d => (d, _h.Agent(d, 0, fast: false, healthEvery: 1))).ToList();
        HubHarness.Until(() => good.All(g => _h.Records(g.d) >= 3), "the good agents' first records");

        // The payload that stopped the whole fleet: a number where a string belongs, inside a health record's data.model.
        Assert.Equal(0, Pub("bad-1", "edgeml/bad-1/health", Batch("bad-1", Record(1, "health", """{"model":{"name":42,"version":{}}}"""))).Code);
        // A batch where one record is bad: the bad one is dropped, the other two are stored.
        Assert.Equal(0, Pub("bad-1", "edgeml/bad-1/tele", Batch("bad-1",
            Record(1, "telemetry", Prediction), Record(2, "telemetry", """{"score":"high"}"""), Record(3, "telemetry", Prediction))).Code);
        // Wrong record class for the topic, a boot id that is not a name, a negative seq, an unknown class, an oversize record.
        Assert.Equal(0, Pub("bad-1", "edgeml/bad-1/tele", Batch("bad-1",
            Record(4, "health", "{}"), Record(5, "telemetry", Prediction, boot: "../../etc"), Record(-6, "telemetry", Prediction),
            Record(7, "secret", "{}"), Record(8, "alert", $$"""{"kind":"rule","error":"{{new string('x', 70_000)}}"}"""))).Code);

        // Numbers that read as infinity, repeated properties, a health report from the year 9999: refused, and the fleet API stays up.
        Assert.Equal(0, Pub("bad-1", "edgeml/bad-1/health", Batch("bad-1", Record(2, "health", """{"model":{"name":"m","version":"1","latencyP99Ms":1e999}}"""))).Code);
        Assert.Equal(0, Pub("bad-1", "edgeml/bad-1/health", Batch("bad-1", Record(3, "health", """{"uptimeSeconds":1,"uptimeSeconds":2}"""))).Code);
        Assert.Equal(0, Pub("bad-1", "edgeml/bad-1/health",
            Batch("bad-1", """{"boot":"b1","seq":4,"class":"health","at":253402300799999,"data":{"model":{"name":"future","version":"1"}}}""")).Code);
        // A clock before 1970 (an RTC without its battery): the device's data all the same, stored and flagged, not dropped.
        Assert.Equal(0, Pub("bad-1", "edgeml/bad-1/health",
            Batch("bad-1", """{"boot":"b1","seq":6,"class":"health","at":-86400000,"data":{"model":{"name":"past","version":"1"}}}""")).Code);
        Assert.Equal(0, Pub("bad-1", "edgeml/bad-1/state/reported", """{"phase":"shadow","name":"m","version":"1","at":"2026-01-01T00:00:00Z","shadow":{"agreement":1e999}}""").Code);

        // Every good device goes on: records produced == stored, and the bad device's good records are there too.
        var before = good.ToDictionary(g => g.d, g => _h.Records(g.d));
        HubHarness.Until(() => good.All(g => _h.Records(g.d) >= before[g.d] + 5), "more records from every good agent after the poison");
        foreach (var (_, p) in good)
        {
            p.Kill();
            p.WaitForExit();
        }

        Assert.Equal([1L, 3L], _h.Stored("bad-1").Select(r => r.Seq).Order());
        Assert.Equal(4, _h.Get("/api/devices").GetArrayLength()); // the fleet table still renders
        _h.Get("/api/drift?since=1h"); // and so does the fleet's drift
        var ingest = _h.Get("/api/ingest");
        Assert.Equal(10, ingest.GetProperty("malformed").GetInt64());
        Assert.Equal(2, ingest.GetProperty("implausibleTime").GetInt64()); // the year-9999 and the 1969 reports: stored, flagged
        Assert.True(ingest.GetProperty("e2eP99Ms").GetDouble() is >= 0 and < 600_000, $"end-to-end latency counts implausible times: {ingest}");
        // … and it does not stay the device's "latest" health: a report of now replaces it.
        Assert.Equal(0, Pub("bad-1", "edgeml/bad-1/health", Batch("bad-1", Record(5, "health", """{"model":{"name":"now","version":"1"}}"""))).Code);
        HubHarness.Until(() => _h.Device("bad-1").GetProperty("model").GetString() == "now", "the newer health report to count");
        Assert.Equal(0, ingest.GetProperty("storeErrors").GetInt64());
        var rejected = _h.Device("bad-1").GetProperty("rejected");
        foreach (var reason in new[] { "data", "class-topic", "boot", "seq", "class", "too-large" })
        {
            Assert.True(rejected.TryGetProperty(reason, out _), $"reason '{reason}' not counted: {rejected}");
        }

        Assert.Equal(0, ingest.GetProperty("quarantined").GetInt64());
        foreach (var (id, _) in good) Assert.False(_h.Device(id).TryGetProperty("rejected", out var r) && r.ValueKind == JsonValueKind.Object && r.EnumerateObject().Any());
    }

    /// <summary>
    /// The embedded broker listens where --MqttAddress says, on IPv6 too: with the default 127.0.0.1, only on loopback
    /// (MQTTnet's IPv6 listener bound every interface, reachable from the network, whatever --MqttAddress said).
    /// </summary>
    [Fact]
    public void The_embedded_broker_listens_on_loopback_only_by_default_on_ipv4_and_ipv6()
    {
        _h.StartHub();
        var (code, listening, err) = HubHarness.Run("/usr/bin/ss", "-Hltn", $"sport = :{_h.Mqtt}");
        Assert.True(code == 0, err);
        var local = listening.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3]).ToList();
        Assert.Contains($"127.0.0.1:{_h.Mqtt}", local);
        Assert.All(local, a => Assert.True(a.StartsWith("127.0.0.1:", StringComparison.Ordinal) || a.StartsWith("[::1]:", StringComparison.Ordinal), string.Join(", ", local)));
    }

    [Theory]
    [InlineData("page")]
    [InlineData("edgeml-hub")]
    [InlineData("EdgeML-2")]
    [InlineData("alerts")]
    [InlineData("api-console")]
    [InlineData("api")]
    [InlineData("$SYS")]
    public async Task Reserved_device_ids_are_refused_at_enrollment(string id)
    {
        _h.StartHub();
        var response = await _h.Api.PostAsJsonAsync("/api/devices", new { id });
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = HubHarness.Json(response).GetProperty("error").GetString()!;
        Assert.Contains(id, error, StringComparison.Ordinal);
        Assert.Matches("reserved|not valid", error);
    }

    [Fact]
    public void A_device_cannot_write_desired_state_alerts_unknown_subtopics_or_retain_what_the_protocol_does_not()
    {
        Assert.True(File.Exists("/usr/bin/mosquitto_sub"), "mosquitto-clients is needed (./build.sh test installs it)");
        _h.StartHub();
        _h.Enroll("dev-a");
        _h.Enroll("dev-b");
        var forged = """{"name":"evil","version":"6.6.6","sha256":"","sizeBytes":1,"url":"http://attacker.example/x"}""";
        var batch = Batch("dev-a", Record(1, "telemetry", Prediction));
        foreach (var (topic, payload, retain, reason) in new[]
                 {
                     ("edgeml/dev-b/state/desired", forged, true, "acl"), // another device's desired state
                     ("edgeml/dev-a/state/desired", forged, true, "unknown-topic"), // its own: only the hub writes desired state
                     ("edgeml/alerts/offline", "{}", false, "acl"),
                     ("edgeml/dev-a/cmd/reboot", "{}", false, "unknown-topic"),
                     ("edgeml/dev-a/tele/extra", batch, false, "unknown-topic"),
                     ("edgeml/dev-a/tele", batch, true, "retained"),
                 })
        {
            Pub("dev-a", topic, payload, retain ? ["-r"] : []); // refused: the broker closes the connection
            Assert.True(_h.Device("dev-a").GetProperty("rejected").TryGetProperty($"refused:{reason}", out _), $"{topic}: not refused as {reason}");
        }

        Assert.Equal(0, _h.Records("dev-a"));
        // Nothing was retained where dev-b (or dev-a) would read it.
        foreach (var (client, filter) in new[] { ("dev-b", "edgeml/dev-b/state/desired"), ("dev-a", "edgeml/dev-a/#") })
        {
            var (code, heard, _) = HubHarness.Run("/usr/bin/mosquitto_sub", "-p", HubHarness.Str(_h.Mqtt), "-i", client, "-u", client, "-P", Password(client),
                "-t", filter, "-C", "1", "-W", "2", "-v");
            Assert.True(code != 0 && heard.Length == 0, $"{client} read '{heard}' on {filter}");
        }
    }

    [Fact]
    public void A_device_id_is_matched_exactly_a_case_variant_does_not_get_in()
    {
        _h.StartHub();
        _h.Enroll("rev-1");
        var (code, _, err) = HubHarness.Run("/usr/bin/mosquitto_pub", "-p", HubHarness.Str(_h.Mqtt), "-i", "REV-1", "-u", "REV-1", "-P", Password("rev-1"),
            "-t", "edgeml/REV-1/tele", "-m", Batch("REV-1", Record(1, "telemetry", Prediction)), "-q", "1");
        Assert.NotEqual(0, code);
        Assert.Contains("not authorised", err, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(0, _h.Records("rev-1"));
    }

    [Fact]
    public async Task Revoking_a_token_ends_an_alert_consumer_session_and_the_last_operator_token_cannot_be_revoked()
    {
        _h.StartHub();
        var (_, created, _) = HubHarness.Run(HubHarness.CliDll, "tokens", "create", "--role", "viewer", "--name", "watcher", "--json", "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        var viewer = JsonDocument.Parse(created).RootElement.GetProperty("token").GetString()!;
        using var sub = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("/usr/bin/mosquitto_sub",
            ["-p", HubHarness.Str(_h.Mqtt), "-i", "api-watcher", "-u", "api", "-P", viewer, "-t", "edgeml/alerts/#", "-q", "1"]) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        try
        {
            // Connected (mosquitto_sub stays), then cut off when its token is revoked (mosquitto_sub ends).
            Assert.False(sub.WaitForExit(1500));
            var revoke = await _h.Api.PostAsync("/api/tokens/watcher/revoke", null);
            Assert.Equal(HttpStatusCode.OK, revoke.StatusCode);
            Assert.True(sub.WaitForExit(15_000), "the alert consumer was not disconnected");
        }
        finally
        {
            if (!sub.HasExited) sub.Kill();
        }

        var last = await _h.Api.PostAsync("/api/tokens/bootstrap/revoke", null);
        Assert.Equal(HttpStatusCode.Conflict, last.StatusCode);
        Assert.Contains("last active operator token", HubHarness.Json(last).GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    /// <summary>Exit 2 (usage) for a value the setting can never take, 1 for one that does not fit this machine (a missing file).</summary>
    [Theory]
    [InlineData("--TrustedKeys:0", "/nope.pub", "--TrustedKeys", 1)]
    [InlineData("--TrustedKeys", "/nope.pub", "is a list", 1)]
    [InlineData("--Broker", "mqtt//bad", "--Broker", 2)]
    [InlineData("--MqttAddress", "999.1.1.1", "--MqttAddress", 2)]
    [InlineData("--SharedGroup", "hubs", "--SharedGroup needs --Broker", 1)] // was ignored: the "replica" served devices alone
    public void A_hub_started_with_a_wrong_setting_says_which_in_one_line_and_exits_non_zero(string option, string value, string named, int exit)
    {
        var (code, _, err) = HubHarness.Run(Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll"),
            "--Data", Path.Combine(_h.Dir.Path, "hub"), "--MqttPort", HubHarness.Str(_h.Mqtt), "--urls", _h.HubUrl, option, value);
        Assert.Equal(exit, code);
        Assert.Contains(named, err, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", err, StringComparison.Ordinal);
    }

    [Fact]
    public void A_broker_ca_that_is_no_file_of_pem_certificates_is_refused_at_start_in_one_line_naming_it_and_why()
    {
        var garbage = Path.Combine(_h.Dir.Path, "garbage.pem");
        File.WriteAllText(garbage, "not a certificate\n");
        var key = Path.Combine(_h.Dir.Path, "key.pem");
        using (var ec = System.Security.Cryptography.ECDsa.Create()) File.WriteAllText(key, ec.ExportPkcs8PrivateKeyPem());
        var broken = Path.Combine(_h.Dir.Path, "broken.pem");
        File.WriteAllText(broken, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        foreach (var (path, why) in new[]
                 {
                     (garbage, "has no PEM certificate"), (key, "has no PEM certificate"), (_h.Dir.Path, "is a directory"),
                     (broken, "has a certificate that cannot be read"), (Path.Combine(_h.Dir.Path, "nope.pem"), "does not exist"),
                 })
        {
            var (code, output, err) = HubHarness.Run(Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll"),
                "--Data", Path.Combine(_h.Dir.Path, "hub"), "--MqttPort", HubHarness.Str(_h.Mqtt), "--urls", _h.HubUrl,
                "--Broker", "mqtts://127.0.0.1:1", "--BrokerCa", path);
            Assert.True(code == 1, $"{path} → {code}: {err}");
            Assert.Equal("", output);
            Assert.StartsWith($"edgeml-hub: --BrokerCa '{path}' {why}", Assert.Single(err.Trim().Split('\n')), StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Newer_and_older_peers_fields_are_accepted_both_ways()
    {
        _h.StartHub();
        _h.Enroll("mixed-1");
        // A newer agent: unknown fields in the envelope, the record and every payload class.
        var newer = Batch("mixed-1",
            Record(1, "telemetry", """{"seq":1,"t":0.1,"model":"m@1","score":0.5,"latency_ms":1,"explanation":{"shap":[0.1]}}""").Replace("\"data\"", "\"signature\":\"x\",\"data\"", StringComparison.Ordinal),
            Record(2, "telemetry", """{"score":0.5}""")) // an older agent: only what it knew then
            .Replace("\"records\"", "\"compression\":\"none\",\"records\"", StringComparison.Ordinal);
        Assert.Equal(0, Pub("mixed-1", "edgeml/mixed-1/tele", newer).Code);
        Assert.Equal(0, Pub("mixed-1", "edgeml/mixed-1/health", Batch("mixed-1",
            Record(3, "health", """{"uptimeSeconds":3,"model":{"name":"m","version":"1","npu":"none"},"battery":{"percent":80}}"""))).Code);
        Assert.Equal(0, Pub("mixed-1", "edgeml/mixed-1/state/reported",
            """{"phase":"active","name":"m","version":"1","active":"m@1","at":"2026-01-01T00:00:00Z","attestation":"tpm"}""", "-r").Code);
        HubHarness.Until(() => _h.Records("mixed-1") >= 3, "the newer agent's records");
        Assert.Equal("m", _h.Device("mixed-1").GetProperty("model").GetString());
        Assert.Equal("m@1", _h.Device("mixed-1").GetProperty("reported").GetProperty("active").GetString());
        Assert.Equal(0, _h.Get("/api/ingest").GetProperty("malformed").GetInt64());
    }

    [Fact]
    public async Task Tokens_can_expire_and_be_revoked_and_a_removed_operator_token_stops_working_at_the_next_start()
    {
        _h.StartHub();
        var (code, created, err) = HubHarness.Run(HubHarness.CliDll, "tokens", "create", "--role", "viewer", "--name", "contractor", "--json", "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        Assert.True(code == 0, err);
        var viewer = JsonDocument.Parse(created).RootElement.GetProperty("token").GetString()!;
        using var v = new HttpClient { BaseAddress = new Uri(_h.HubUrl) };
        v.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", viewer);
        Assert.Equal(HttpStatusCode.OK, (await v.GetAsync("/api/devices")).StatusCode);

        var (revokeCode, revoked, revokeErr) = HubHarness.Run(HubHarness.CliDll, "tokens", "revoke", "contractor", "--hub", _h.HubUrl, "--token", _h.OperatorToken);
        Assert.True(revokeCode == 0, revokeErr);
        Assert.Contains("revoked 1 token", revoked, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Unauthorized, (await v.GetAsync("/api/devices")).StatusCode);

        // An expiring token works until it expires (a tiny expiry: already past when it is used).
        var expiring = await _h.Api.PostAsJsonAsync("/api/tokens", new { role = "viewer", name = "temp", expiresHours = 1e-9 });
        var temp = HubHarness.Json(expiring).GetProperty("token").GetString()!;
        using var t = new HttpClient { BaseAddress = new Uri(_h.HubUrl) };
        t.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", temp);
        Assert.Equal(HttpStatusCode.Unauthorized, (await t.GetAsync("/api/devices")).StatusCode);
        var list = _h.Get("/api/tokens").EnumerateArray().ToDictionary(x => x.GetProperty("name").GetString()!, x => x.GetProperty("state").GetString());
        Assert.Equal("revoked", list["contractor"]);
        Assert.Equal("expired", list["temp"]);

        // A token given with --OperatorToken works while the hub is started with it, and not after a start without it.
        _h.KillHub();
        _h.StartHub(null, "--OperatorToken", "op_configured-token-1234567890");
        using var client = new HttpClient { BaseAddress = new Uri(_h.HubUrl) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "op_configured-token-1234567890");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/devices")).StatusCode);
        _h.KillHub();
        _h.StartHub();
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/api/devices")).StatusCode);
    }

    [Fact]
    public async Task Thousands_of_random_and_mutated_payloads_from_one_device_never_stop_ingest_for_another()
    {
        _h.StartHub();
        _h.Enroll("fuzz-1");
        using var good = _h.Agent("good-1", 150, fast: false);
        HubHarness.Until(() => _h.Records("good-1") >= 2, "the good agent's first records");

        var valid = new[]
        {
            ("tele", Batch("fuzz-1", Record(1, "telemetry", Prediction), Record(2, "alert", """{"kind":"rule","rule":"r","state":"on","score":0.9}"""))),
            ("health", Batch("fuzz-1", Record(1, "health", """{"uptimeSeconds":3,"model":{"name":"m","version":"1","latencyP99Ms":2},"sensors":[{"name":"s","state":"ok"}]}"""))),
            ("drift", Batch("fuzz-1", Record(1, "drift", """{"model":"m","version":"1","features":[{"name":"ax","count":3,"counts":[1,2],"kllK":8,"kllN":3,"kllLevels":[0,3],"kllItems":""}],"labels":{"a":1}}"""))),
            ("state/reported", """{"phase":"active","name":"m","version":"1","at":"2026-01-01T00:00:00Z"}"""),
            ("status", """{"state":"online","boot":"b1"}"""),
        };
        var random = new Random(20261129);
        using var client = new MQTTnet.MqttClientFactory().CreateMqttClient();
        var options = new MQTTnet.MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", _h.Mqtt).WithClientId("fuzz-1").WithCredentials("fuzz-1", Password("fuzz-1"))
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).Build();
        await client.ConnectAsync(options);
        for (var i = 0; i < 2000; i++)
        {
            var (topic, json) = valid[random.Next(valid.Length)];
            var bytes = System.Text.Encoding.UTF8.GetBytes(json).ToList();
            for (var k = random.Next(1, 6); k > 0 && bytes.Count > 0; k--)
            {
                var at = random.Next(bytes.Count);
                switch (random.Next(3))
                {
                    case 0: bytes[at] = (byte)random.Next(256); break;
                    case 1: bytes.Insert(at, "{}[]\",:0e-9\\u00"u8[random.Next(15)]); break;
                    default: bytes.RemoveAt(at); break;
                }
            }

            if (!client.IsConnected) await client.ConnectAsync(options);
            var result = await client.PublishAsync(new MQTTnet.MqttApplicationMessageBuilder().WithTopic($"edgeml/fuzz-1/{topic}").WithPayload(bytes.ToArray())
                .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build());
            Assert.True(result.IsSuccess, $"publish {i} on {topic}: {result.ReasonCode}"); // acknowledged: kept or dropped, never a stuck queue
        }

        await client.DisconnectAsync(new MQTTnet.MqttClientDisconnectOptions());
        Assert.True(good.WaitForExit(90_000), "the good agent did not finish");
        HubHarness.Until(() => _h.Stored("good-1").Count >= 150, "all 150 records of the good agent");
        Assert.Equal(Enumerable.Range(1, 150).Select(i => (long)i), _h.Stored("good-1").Select(r => r.Seq).Order());
        var ingest = _h.Get("/api/ingest");
        Assert.True(ingest.GetProperty("malformed").GetInt64() > 500, $"the mutations should mostly be refused: {ingest}");
        Assert.Equal(0, ingest.GetProperty("storeErrors").GetInt64());
    }

    public void Dispose() => _h.Dispose();
}
