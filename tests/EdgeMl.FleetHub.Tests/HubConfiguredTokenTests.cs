using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// <c>--OperatorToken</c> on a shared PostgreSQL store: hub processes started on it never revoke each other's configured
/// token (a maintenance start without one, a replica rolled to a new one); the operator retires the old one by name.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class HubConfiguredTokenTests(PostgresFixture postgres) : IDisposable
{
    private readonly HubHarness _a = new();
    private readonly HubHarness _b = new();
    private readonly HubHarness _c = new();

    [Fact]
    public void A_hub_started_on_the_shared_store_without_or_with_another_operator_token_keeps_the_running_replicas_token_working_until_it_is_revoked()
    {
        var store = postgres.Cluster.CreateDatabase();
        var old = "op_old_" + Guid.NewGuid().ToString("N");
        var rolled = "op_new_" + Guid.NewGuid().ToString("N");
        _a.StartHub(null, "--Store", store, "--ClientId", "hub-a", "--OperatorToken", old);

        // A third process on the same database without --OperatorToken (the tester's repro): the running token still works.
        var log = new ConcurrentQueue<string>();
        _c.Start(Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll"),
            ["--Data", _c.HubData, "--MqttPort", _c.Mqtt.ToString(CultureInfo.InvariantCulture), "--urls", _c.HubUrl, "--Store", store, "--ClientId", "hub-c"], log.Enqueue);
        HubHarness.Until(() => Status(_c, old) is not null, "the third hub to answer");
        Assert.Equal(HttpStatusCode.OK, Status(_c, old));
        Assert.Equal(HttpStatusCode.OK, Status(_a, old));

        // Rotation: replica b is started with a new token; during the roll both work on every replica, and b says which old one still works.
        _b.StartHub(null, "--Store", store, "--ClientId", "hub-b", "--OperatorToken", rolled);
        foreach (var h in new[] { _a, _b })
        {
            Assert.Equal(HttpStatusCode.OK, Status(h, old));
            Assert.Equal(HttpStatusCode.OK, Status(h, rolled));
        }

        var oldName = "configured-" + EdgeMl.FleetHub.Security.Secrets.Hash(old)[..8];
        Assert.Contains(_b.HubLog, l => l.Contains(oldName, StringComparison.Ordinal) && l.Contains("still work", StringComparison.Ordinal));

        // Once the roll is over the operator revokes the old one by the name the warning gave: it stops working on every replica.
        var revoke = HubHarness.Run(HubHarness.CliDll, "tokens", "revoke", oldName, "--hub", _b.HubUrl, "--token", rolled);
        Assert.True(revoke.Code == 0, revoke.Err);
        Assert.Equal(HttpStatusCode.Unauthorized, Status(_a, old));
        Assert.Equal(HttpStatusCode.OK, Status(_a, rolled));

        // A replica still started with the revoked token does not bring it back.
        _a.KillHub();
        var restarted = new ConcurrentQueue<string>();
        _a.Start(Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll"),
            ["--Data", _a.HubData, "--MqttPort", _a.Mqtt.ToString(CultureInfo.InvariantCulture), "--urls", _a.HubUrl, "--Store", store, "--ClientId", "hub-a", "--OperatorToken", old], restarted.Enqueue);
        HubHarness.Until(() => Status(_a, rolled) is not null, "replica a to answer again");
        Assert.Equal(HttpStatusCode.Unauthorized, Status(_a, old));
        Assert.Contains(restarted, l => l.Contains("was revoked", StringComparison.Ordinal));
    }

    /// <summary>The status of <c>GET /api/devices</c> with <paramref name="token"/>, or null while the hub does not answer.</summary>
    private static HttpStatusCode? Status(HubHarness hub, string token)
    {
        try
        {
            using var client = new HttpClient { BaseAddress = new Uri(hub.HubUrl), Timeout = TimeSpan.FromSeconds(10) };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
            return client.GetAsync("/api/devices").Result.StatusCode;
        }
        catch (AggregateException)
        {
            return null;
        }
    }

    public void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
        _c.Dispose();
    }
}
