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

    [Fact]
    public async Task Behind_an_external_broker_what_could_not_be_stored_while_the_store_was_away_is_delivered_again_and_stored_once()
    {
        // A delivery the hub does not acknowledge is sent again by the broker only on a new connection of the session:
        // the hub reconnects after a store failure (else those batches wait for ever, holding the session's in-flight slots).
        Assert.True(EdgeMl.TestUtilities.Mqtt.Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new EdgeMl.TestUtilities.Mqtt.Mosquitto().Start();
        // A cluster of its own, stopped and started again as a database restart does.
        using var cluster = new EdgeMl.TestUtilities.Postgres.PostgresCluster();
        var store = cluster.CreateDatabase();
        var token = "op_outage_" + Guid.NewGuid().ToString("N");
        _hub.StartHub(broker.Url, "--Store", store, "--OperatorToken", token);
        Assert.True(_hub.WaitSubscribed(30_000), "the hub did not subscribe at the broker");
        var simOut = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var report = Path.Combine(_hub.Dir.Path, "sim-acked.json");
        using var sim = _hub.StartSimulator(broker.Url, token, "out", 12, report, simOut);
        try
        {
            HubHarness.Until(() => _hub.Records("out00000") >= 10, "the first records", 30_000);
            // PostgreSQL restarts while the devices go on sending (the broker acknowledges their batches).
            cluster.Stop();
            HubHarness.Until(() => _hub.HubLog.Any(l => l.Contains("not acknowledged", StringComparison.Ordinal)), "a batch the hub could not store", 20_000);

            cluster.Start();

            Assert.True(sim.WaitForExit(60_000), "the simulator did not finish");
            Assert.True(sim.ExitCode == 0, string.Join("\n", simOut));
            await HubHarness.AssertSimulatedRecordsStoredOnceAsync(report, _hub);
            Assert.Contains(_hub.HubLog, l => l.Contains("reconnecting to the broker", StringComparison.Ordinal));
        }
        finally
        {
            if (!sim.HasExited) sim.Kill(entireProcessTree: true);
        }
    }

    [Fact]
    public async Task A_hub_started_before_its_database_waits_for_it_saying_why_and_starts_once_it_is_up()
    {
        // As after a power cut: the hub's supervisor starts it while PostgreSQL is still down.
        using var cluster = new EdgeMl.TestUtilities.Postgres.PostgresCluster();
        var store = cluster.CreateDatabase();
        cluster.Stop();
        var waiting = new Func<int>(() => _hub.HubLog.Count(l => l.Contains("cannot be reached yet", StringComparison.Ordinal)));
        var up = Task.Run(() =>
        {
            HubHarness.Until(() => waiting() >= 2, "the hub to say (twice) that it waits for PostgreSQL", 30_000);
            cluster.Start();
        });
        _hub.StartHub(null, "--Store", store, "--StoreWaitSeconds", "120");
        await up;
        var line = _hub.HubLog.First(l => l.Contains("cannot be reached yet", StringComparison.Ordinal));
        Assert.StartsWith("edgeml-hub: PostgreSQL at ", line, StringComparison.Ordinal);
        Assert.Contains("--StoreWaitSeconds", line, StringComparison.Ordinal);
        Assert.DoesNotContain(" at Npgsql", string.Join("\n", _hub.HubLog), StringComparison.Ordinal); // no stack trace
        Assert.Contains(_hub.HubLog, l => l.StartsWith("edgeml-hub: PostgreSQL answered at try ", StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.OK, (await _hub.Api.GetAsync("/api/devices")).StatusCode);
    }

    [Fact]
    public void A_database_that_stays_down_stops_the_hub_after_the_wait_with_the_reason_and_exit_1()
    {
        using var cluster = new EdgeMl.TestUtilities.Postgres.PostgresCluster();
        var store = cluster.CreateDatabase();
        cluster.Stop();
        var hub = Path.Combine(AppContext.BaseDirectory, "edgeml-hub.dll");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var (code, _, err) = HubHarness.Run(hub, "--Store", store, "--StoreWaitSeconds", "3", "--Data", _hub.HubData, "--urls", _hub.HubUrl);
        Assert.Equal(1, code);
        var lines = err.Trim().Split('\n');
        Assert.Contains(lines, l => l.Contains("cannot be reached yet", StringComparison.Ordinal));
        Assert.StartsWith("edgeml-hub: cannot open the store (--Store) (waited 3 s, --StoreWaitSeconds):", lines[^1], StringComparison.Ordinal);
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(3) && clock.Elapsed < TimeSpan.FromSeconds(40), $"the hub gave up after {clock.Elapsed.TotalSeconds:0.0} s, not about 3");

        // Not waiting at all when told so: one line.
        var (code0, _, err0) = HubHarness.Run(hub, "--Store", store, "--StoreWaitSeconds", "0", "--Data", _hub.HubData, "--urls", _hub.HubUrl);
        Assert.Equal(1, code0);
        Assert.Single(err0.Trim().Split('\n'));
    }

    /// <summary>GET /api/devices until its answer satisfies <paramref name="done"/>; fails after the timeout.</summary>
    private async Task<HttpResponseMessage> UntilAsync(Func<HttpResponseMessage, bool> done, string what, int timeoutMs)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (true)
        {
            HttpResponseMessage answer;
            try
            {
                answer = await _hub.Api.GetAsync("/api/devices");
            }
            catch (HttpRequestException e)
            {
                // The hub is gone: say what it wrote last.
                throw new Xunit.Sdk.XunitException($"waiting for {what}: {e.Message}; the hub's last lines:\n{string.Join('\n', _hub.HubLog.TakeLast(30))}");
            }

            if (done(answer)) return answer;
            Assert.True(Environment.TickCount64 < deadline, $"timed out waiting for {what} (last answer {(int)answer.StatusCode})");
            await Task.Delay(100);
        }
    }

    public void Dispose() => _hub.Dispose();
}
