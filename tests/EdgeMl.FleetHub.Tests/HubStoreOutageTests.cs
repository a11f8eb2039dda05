using System.Net;
using Npgsql;

namespace EdgeMl.FleetHub.Tests;

/// <summary>The hub on PostgreSQL while the database refuses it: the API answers 503 with a JSON reason (not 500), and again normally once it is back.</summary>
[Collection(PostgresCollection.Name)]
public sealed class HubStoreOutageTests(PostgresFixture postgres) : IDisposable
{
    private readonly HubHarness _hub = new();

    [Fact]
    public async Task The_api_answers_503_with_the_reason_while_the_store_is_away_and_recovers_when_it_is_back()
    {
        var store = postgres.Cluster.CreateDatabase();
        var database = new NpgsqlConnectionStringBuilder(store).Database!;
        _hub.StartHub(null, "--Store", store);
        Assert.Equal(HttpStatusCode.OK, (await _hub.Api.GetAsync("/api/devices")).StatusCode);

        using var admin = new NpgsqlConnection(postgres.Cluster.ConnectionString());
        admin.Open();
        void Sql(string sql)
        {
            using var c = new NpgsqlCommand(sql, admin);
            c.ExecuteNonQuery();
        }

        // The database goes away for the hub: new connections refused, the open ones ended (as in a restart or fail-over).
        Sql($"ALTER DATABASE {database} ALLOW_CONNECTIONS false");
        Sql($"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'");
        var answer = await UntilAsync(r => r.StatusCode != HttpStatusCode.OK, "the API to notice the store is away", 20_000);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, answer.StatusCode);
        Assert.Equal("application/json; charset=utf-8", answer.Content.Headers.ContentType?.ToString());
        var error = System.Text.Json.JsonDocument.Parse(await answer.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString()!;
        Assert.StartsWith("the hub's store is unavailable, try again:", error, StringComparison.Ordinal);
        Assert.DoesNotContain(" at ", error, StringComparison.Ordinal); // no stack trace
        Assert.Equal("5", answer.Headers.RetryAfter?.ToString());

        Sql($"ALTER DATABASE {database} ALLOW_CONNECTIONS true");
        await UntilAsync(r => r.StatusCode == HttpStatusCode.OK, "the API to answer again once the store is back", 30_000);
    }

    /// <summary>GET /api/devices until its answer satisfies <paramref name="done"/>; fails after the timeout.</summary>
    private async Task<HttpResponseMessage> UntilAsync(Func<HttpResponseMessage, bool> done, string what, int timeoutMs)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (true)
        {
            var answer = await _hub.Api.GetAsync("/api/devices");
            if (done(answer)) return answer;
            Assert.True(Environment.TickCount64 < deadline, $"timed out waiting for {what} (last answer {(int)answer.StatusCode})");
            await Task.Delay(100);
        }
    }

    public void Dispose() => _hub.Dispose();
}
