using System.Buffers;
using System.Text;
using System.Text.Json;
using CsCheck;
using EdgeMl.Protocol.Wire;

namespace EdgeMl.Protocol.Tests;

/// <summary>
/// The hub's ingest parser and the agent's desired-state parser against what nobody here wrote: thousands of random
/// and mutated payloads (CsCheck). Nothing may escape them but <see cref="WireFormatException"/>; a batch parse
/// never throws at all; whatever passes is within the limits.
/// </summary>
public sealed class DeviceMessageParserTests
{
    private static readonly long Now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    private static readonly string Batch = $$$"""
        {"device":"dev-1","records":[
          {"boot":"a1b2","seq":1,"class":"telemetry","at":{{{Now}}},"data":{"seq":1,"t":0.5,"model":"m@1","label":"ok","score":0.9,"probs":{"ok":0.9,"bad":0.1},"latency_ms":0.3}},
          {"boot":"a1b2","seq":2,"class":"alert","at":{{{Now}}},"data":{"kind":"rule","rule":"r1","state":"on","pin":17,"score":0.95,"sequence":4,"at":"2026-01-01T00:00:00Z"}}]}
        """;

    private static readonly string Health = $$$$"""
        {"device":"dev-1","records":[{"boot":"a1b2","seq":1,"class":"health","at":{{{{Now}}}},"data":
          {"at":"2026-01-01T00:00:00Z","uptimeSeconds":5,"model":{"name":"m","version":"1","provider":"cpu","predictions":3,"latencyP99Ms":1.5},
           "sensors":[{"name":"s","state":"ok","samples":10}],"outbox":{"depth":{"telemetry":3},"bytes":100,"maxBytes":1000},"system":{"cpus":4,"cpuPercent":5}}}]}
        """;

    private const string Desired = """{"name":"m","version":"1.1.0","sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","sizeBytes":1234,"url":"/api/models/m/1.1.0/package","activate":true,"shadowSeconds":5}""";
    private const string Reported = """{"phase":"shadow","name":"m","version":"1.1.0","active":"m@1.0.0","shadow":{"runs":3,"agreement":1,"distribution":{"ok":1}},"at":"2026-01-01T00:00:00Z"}""";
    private const string Status = """{"state":"online","boot":"a1b2","at":1}""";

    private static readonly string[] Valid = [Batch, Health, Desired, Reported, Status];

    private static readonly string[] Replacements = ["42", "-1", "1e400", "\"x\"", "\"\"", "null", "true", "[]", "{}", "[1,2]", "{\"a\":1}", "\"" + new string('z', 300) + "\"", "9223372036854775807"];

    private static ReadOnlySequence<byte> Bytes(string s) => new(Encoding.UTF8.GetBytes(s));

    /// <summary>Every parser on one payload: only <see cref="WireFormatException"/> may come out, and a batch parse never throws.</summary>
    private static void ParseAll(byte[] payload)
    {
        var seq = new ReadOnlySequence<byte>(payload);
        foreach (var topic in new[] { "tele", "health", "drift" })
        {
            var parsed = DeviceMessageParser.ParseBatch("dev-1", topic, seq);
            Assert.True(parsed.Records.Count <= WireLimits.Default.MaxRecordsPerBatch);
            foreach (var r in parsed.Records)
            {
                Assert.True(DeviceMessageParser.IsName(r.Boot, WireLimits.Default.MaxNameLength));
                Assert.InRange(r.Seq, 0, WireLimits.Default.MaxSeq);
                Assert.True(r.Data.Length <= WireLimits.Default.MaxDriftRecordBytes);
            }
        }

        foreach (var parse in new Action[]
                 {
                     () => DeviceMessageParser.ParseDesired(seq),
                     () => DeviceMessageParser.ParseReported(seq),
                     () => DeviceMessageParser.ParseStatus(seq),
                 })
        {
            try
            {
                parse();
            }
            catch (WireFormatException)
            {
            }
        }
    }

    /// <summary>The same payload with one JSON value (scalar, array or object start) swapped for a value of another type.</summary>
    private static string SwapValue(string json, int which, string replacement)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        var reader = new Utf8JsonReader(bytes);
        var values = new List<(long Start, long End)>();
        while (reader.Read())
        {
            if (reader.TokenType is JsonTokenType.String or JsonTokenType.Number or JsonTokenType.True or JsonTokenType.False or JsonTokenType.Null)
            {
                var start = reader.TokenStartIndex;
                values.Add((start, reader.BytesConsumed));
            }
        }

        var (s, e) = values[which % values.Count];
        return Encoding.UTF8.GetString(bytes, 0, (int)s) + replacement + Encoding.UTF8.GetString(bytes, (int)e, bytes.Length - (int)e);
    }

    [Fact]
    public void Random_bytes_never_escape_the_parsers()
    {
        Gen.Byte.Array[0, 600].Sample(ParseAll, iter: 3000, threads: 1);
    }

    [Fact]
    public void Valid_payloads_with_random_bytes_flipped_inserted_or_cut_never_escape_the_parsers()
    {
        Gen.Select(Gen.Int[0, Valid.Length - 1], Gen.Select(Gen.Int[0, 4000], Gen.Byte, Gen.Int[0, 2]).Array[1, 6])
            .Sample((i, edits) =>
            {
                var bytes = Encoding.UTF8.GetBytes(Valid[i]).ToList();
                foreach (var (pos, value, kind) in edits)
                {
                    var at = pos % Math.Max(1, bytes.Count);
                    switch (kind)
                    {
                        case 0 when bytes.Count > 0: bytes[at] = value; break;
                        case 1: bytes.Insert(at, value); break;
                        default: bytes = bytes.Take(at).ToList(); break;
                    }
                }

                ParseAll([.. bytes]);
            }, iter: 4000, threads: 1);
    }

    [Fact]
    public void Valid_payloads_with_values_of_the_wrong_type_never_escape_the_parsers()
    {
        Gen.Select(Gen.Int[0, Valid.Length - 1], Gen.Int[0, 200], Gen.Int[0, Replacements.Length - 1])
            .Sample((i, which, r) => ParseAll(Encoding.UTF8.GetBytes(SwapValue(Valid[i], which, Replacements[r]))), iter: 4000, threads: 1);
    }

    [Fact]
    public void One_bad_record_is_refused_with_its_reason_and_the_rest_of_the_batch_is_kept()
    {
        var bad = Batch.Replace("\"score\":0.9,\"probs\"", "\"score\":\"high\",\"probs\"", StringComparison.Ordinal);
        var parsed = DeviceMessageParser.ParseBatch("dev-1", "tele", Bytes(bad));
        var kept = Assert.Single(parsed.Records);
        Assert.Equal(RecordClass.Alert, kept.Class);
        var refused = Assert.Single(parsed.Rejected);
        Assert.Equal(0, refused.Index);
        Assert.Equal("data", refused.Reason);
        Assert.Contains("records[0]", refused.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void A_batch_for_another_device_or_over_the_record_limit_is_refused_whole()
    {
        Assert.Equal("device-mismatch", Assert.Single(DeviceMessageParser.ParseBatch("dev-2", "tele", Bytes(Batch)).Rejected).Reason);
        var many = $$"""{"device":"dev-1","records":[{{string.Join(',', Enumerable.Repeat("{}", 1001))}}]}""";
        Assert.Equal("batch-too-large", Assert.Single(DeviceMessageParser.ParseBatch("dev-1", "tele", Bytes(many)).Rejected).Reason);
    }

    [Fact]
    public void Unknown_fields_from_a_newer_peer_are_skipped_in_every_message()
    {
        // Into every object but the maps (probs, distribution, depth), whose keys are data, not fields.
        static string Extra(string json) => new[] { "device", "boot", "seq", "kind", "at", "name", "phase", "state", "runs" }
            .Aggregate(json, (j, field) => j.Replace($"{{\"{field}\"", $"{{\"futureField\":[1,{{\"x\":2}}],\"{field}\"", StringComparison.Ordinal));
        Assert.Equal(2, DeviceMessageParser.ParseBatch("dev-1", "tele", Bytes(Extra(Batch))).Records.Count);
        Assert.Single(DeviceMessageParser.ParseBatch("dev-1", "health", Bytes(Extra(Health))).Records);
        Assert.Equal("1.1.0", DeviceMessageParser.ParseDesired(Bytes(Extra(Desired))).Version);
        Assert.Equal("shadow", DeviceMessageParser.ParseReported(Bytes(Extra(Reported))).Phase);
        Assert.Equal("online", DeviceMessageParser.ParseStatus(Bytes(Extra(Status))).State);
    }

    [Theory]
    [InlineData("\"score\":0.9,\"probs\"", "\"score\":1e999,\"probs\"", "out of range")] // reads as infinity
    [InlineData("\"score\":0.9,\"probs\"", "\"score\":0.9,\"score\":0.1,\"probs\"", "appears twice")]
    public void Numbers_out_of_range_and_repeated_properties_refuse_the_payload(string from, string to, string reason)
    {
        var parsed = DeviceMessageParser.ParseBatch("dev-1", "tele", Bytes(Batch.Replace(from, to, StringComparison.Ordinal)));
        Assert.Empty(parsed.Records);
        Assert.Contains(reason, Assert.Single(parsed.Rejected).Detail, StringComparison.Ordinal);
        var e = Assert.Throws<WireFormatException>(() => DeviceMessageParser.ParseReported(Bytes(Reported.Replace("\"agreement\":1", "\"agreement\":1e999", StringComparison.Ordinal))));
        Assert.Contains("out of range", e.Message, StringComparison.Ordinal);
    }

    private static readonly string Drift = $$$$"""
        {"device":"dev-1","records":[{"boot":"a1b2","seq":1,"class":"drift","at":{{{{Now}}}},"data":
          {"model":"m","version":"1","features":[{"name":"ax","count":3,"missing":0,"min":0.1,"max":0.3,"mean":0.2,"m2":0.02,"counts":[1,2],"kllK":8,"kllN":3,"kllLevels":[3],"kllItems":"zczMPc3MTD6amZk-"}],
           "labels":{"ok":3}}}]}
        """;

    [Theory]
    [InlineData("\"kllItems\":\"zczMPc3MTD6amZk-\"", "\"kllItems\":\"\"", "bytes of KLL items")]
    [InlineData("\"kllItems\":\"zczMPc3MTD6amZk-\"", "\"kllItems\":\"!!!\"", "base64url")]
    [InlineData("\"kllK\":8", "\"kllK\":0", "KLL k")]
    [InlineData("\"kllLevels\":[3]", "\"kllLevels\":[0,999999]", "KLL")]
    [InlineData("\"counts\":[1,2]", "\"counts\":[1000000000000000,2]", "counts")]
    [InlineData("\"ok\":3", "\"ok\":-3", "label")]
    [InlineData("\"m2\":0.02", "\"m2\":-1", "M2")]
    public void A_drift_sketch_the_agent_could_not_have_made_is_refused(string from, string to, string reason)
    {
        Assert.Single(DeviceMessageParser.ParseBatch("dev-1", "drift", Bytes(Drift)).Records); // the original is fine
        var parsed = DeviceMessageParser.ParseBatch("dev-1", "drift", Bytes(Drift.Replace(from, to, StringComparison.Ordinal)));
        Assert.Empty(parsed.Records);
        Assert.Contains(reason, Assert.Single(parsed.Rejected).Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Seq_zero_is_refused_and_control_characters_from_a_device_never_reach_a_message_raw()
    {
        var zero = DeviceMessageParser.ParseBatch("dev-1", "tele", Bytes(Batch.Replace("\"seq\":1,\"class\"", "\"seq\":0,\"class\"", StringComparison.Ordinal)));
        Assert.Equal("seq", zero.Rejected[0].Reason);
        var forged = DeviceMessageParser.ParseBatch("dev-1", "tele", Bytes(Batch.Replace("\"class\":\"alert\"", "\"class\":\"x\\nwarn: FORGED\\u001b[31m\"", StringComparison.Ordinal)));
        var detail = Assert.Single(forged.Rejected).Detail;
        Assert.DoesNotContain('\n', detail);
        Assert.DoesNotContain('\u001b', detail);
        Assert.Contains("\\u000a", detail, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("\"sha256\":\"0123", "\"sha256\":\"zz23", "sha256")]
    [InlineData("\"sizeBytes\":1234", "\"sizeBytes\":-5", "sizeBytes")]
    [InlineData("\"name\":\"m\"", "\"name\":\"../m\"", "name")]
    [InlineData("\"shadowSeconds\":5", "\"shadowSeconds\":99999999", "shadowSeconds")]
    public void A_desired_state_out_of_range_is_refused_naming_the_field(string from, string to, string field)
    {
        var e = Assert.Throws<WireFormatException>(() => DeviceMessageParser.ParseDesired(Bytes(Desired.Replace(from, to, StringComparison.Ordinal))));
        Assert.Contains(field, e.Message, StringComparison.Ordinal);
    }
}
