using System.Net;
using System.Net.Http.Headers;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// Two hub processes (replicas) on one PostgreSQL store behind one Mosquitto, splitting device traffic with
/// <c>--SharedGroup</c>: a device's records are stored once, and either replica answers any API call.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class HubReplicasTests(PostgresFixture postgres) : IDisposable
{
    private readonly HubHarness _a = new();
    private readonly HubHarness _b = new();

    [Fact]
    public async Task Two_replicas_on_one_postgres_store_each_record_once_and_either_answers_any_api_call()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new Mosquitto().Start();
        var store = postgres.Cluster.CreateDatabase();
        var token = "op_replicas_" + Guid.NewGuid().ToString("N");
        var keys = Path.Combine(_a.Dir.Path, "keys");
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "keys", "create", "ops", "--dir", keys).Code);
        foreach (var (h, id) in new[] { (_a, "hub-a"), (_b, "hub-b") })
        {
            h.StartHub(broker.Url, "--Store", store, "--SharedGroup", "hubs", "--ClientId", id, "--OperatorToken", token,
                "--TrustedKeys:0", Path.Combine(keys, "ops.pub"));
            Assert.True(h.WaitSubscribed(30_000), $"{id} did not subscribe at the broker");
        }

        // Devices send through the broker; the shared subscription hands each batch to one replica or the other.
        var agents = new[] { "rep-1", "rep-2", "rep-3" }.Select(d => (d, _a.Agent(d, 200, fast: true))).ToList();
        foreach (var (_, p) in agents)
        {
            Assert.True(p.WaitForExit(90_000), "an agent did not finish");
            p.Dispose();
        }

        foreach (var (id, _) in agents)
        {
            // 200 predictions and the drift monitor's last window.
            HubHarness.Until(() => _b.Records(id) >= 201, $"{id}'s records through replica b", 60_000);
            Assert.Equal(201, _a.Records(id));
            var stored = _b.Stored(id);
            Assert.Equal(Enumerable.Range(1, 200).Select(i => (long)i), stored.Select(r => r.Seq).Order()); // each once
        }

        // A model pushed to replica a is downloaded, resumed with a Range request, from replica b.
        var package = Path.Combine(_a.Dir.Path, "int8.edgepkg");
        File.Copy(TestPackages.VibrationInt8, package);
        Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "model", "sign", package, "--key", Path.Combine(keys, "ops.key")).Code);
        var push = HubHarness.Run(HubHarness.CliDll, "model", "push", package, "--hub", _a.HubUrl, "--token", token);
        Assert.True(push.Code == 0, push.Err);
        var bytes = await File.ReadAllBytesAsync(package);
        using var part = new HttpRequestMessage(HttpMethod.Get, "/api/models/vibration-fault/1.0.0/package");
        part.Headers.Range = new RangeHeaderValue(1000, 1999);
        using var response = await _b.Api.SendAsync(part);
        Assert.Equal(HttpStatusCode.PartialContent, response.StatusCode);
        Assert.Equal(bytes[1000..2000], await response.Content.ReadAsByteArrayAsync());
        Assert.Equal(bytes, await _b.Api.GetByteArrayAsync("/api/models/vibration-fault/1.0.0/package"));

        // Replica a dies: b still answers, from the same data.
        _a.KillHub();
        Assert.Equal(201, _b.Records("rep-1"));
        Assert.Equal("vibration-fault", _b.Get("/api/models").EnumerateArray().Single().GetProperty("name").GetString());
    }

    [Fact]
    public void A_store_that_cannot_be_opened_stops_the_hub_with_one_line()
    {
        var hub = Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll");
        var bad = HubHarness.Run(hub, "--Store", "Hots=nowhere", "--Data", _a.HubData, "--urls", _a.HubUrl);
        Assert.Equal(1, bad.Code);
        Assert.StartsWith("edgeml-hub: --Store is not a PostgreSQL connection string", bad.Err.Trim(), StringComparison.Ordinal);
        Assert.Single(bad.Err.Trim().Split('\n'));

        var away = HubHarness.Run(hub, "--Store", postgres.Cluster.ConnectionString("no_such_database"), "--Data", _a.HubData, "--urls", _a.HubUrl);
        Assert.Equal(1, away.Code);
        Assert.StartsWith("edgeml-hub: cannot open the store (--Store):", away.Err.Trim(), StringComparison.Ordinal);
        Assert.Contains("no_such_database", away.Err, StringComparison.Ordinal);
        Assert.Single(away.Err.Trim().Split('\n'));
    }

    public void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
    }
}
