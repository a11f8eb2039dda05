using EdgeMl.TestUtilities.Mqtt;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// What the hub says about the external broker it connects to (<c>--Broker</c>): why a connection fails, and a broker
/// whose packet limit would make it acknowledge device batches that it then drops for the hub.
/// </summary>
public sealed class ExternalBrokerConnectionTests : IDisposable
{
    private readonly HubHarness _h = new();

    [Fact]
    public void A_broker_nobody_listens_on_is_logged_as_unreachable_with_why_the_connection_failed()
    {
        // MQTTnet's own message is only "Error while connecting host 'Unspecified/127.0.0.1:PORT'."; the reason is inside.
        var port = Mosquitto.FreePort();
        _h.StartHub($"mqtt://127.0.0.1:{HubHarness.Str(port)}");
        HubHarness.Until(() => _h.HubLog.Any(l => l.Contains("unreachable", StringComparison.Ordinal) && l.Contains("Connection refused", StringComparison.Ordinal)),
            $"an 'unreachable … Connection refused' line; the log said:\n{string.Join("\n", _h.HubLog.Where(l => l.Contains("broker", StringComparison.OrdinalIgnoreCase)).TakeLast(5))}", 20_000);
    }

    [Theory]
    [InlineData(null, 2 * 1024 * 1024, true)] // Mosquitto's default: no limit at all
    [InlineData(131072, 65536, true)]
    [InlineData(65536, 65536, false)]
    [InlineData(65536, 2 * 1024 * 1024, false)]
    public void A_broker_that_takes_larger_publishes_than_the_hub_is_named_at_connect_as_one_that_would_drop_acknowledged_batches(int? brokerMax, int hubMax, bool warned)
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new Mosquitto(listenerOptions: brokerMax is { } m ? $"max_packet_size {HubHarness.Str(m)}" : null).Start();
        _h.StartHub(broker.Url, "--MaxPacketBytes", HubHarness.Str(hubMax));
        // The warning comes before the "Connected" line that WaitSubscribed waits for.
        Assert.True(_h.WaitSubscribed(30_000), "the hub did not connect to the broker");
        var lines = _h.HubLog.Where(l => l.Contains("(--MaxPacketBytes)", StringComparison.Ordinal)).ToList();
        if (!warned)
        {
            Assert.Empty(lines);
            return;
        }

        var line = Assert.Single(lines);
        Assert.Contains(brokerMax is { } b ? $"up to {HubHarness.Str(b)} bytes" : "of any size", line, StringComparison.Ordinal);
        Assert.Contains($"Set the broker's max_packet_size to {HubHarness.Str(hubMax)}", line, StringComparison.Ordinal);
    }

    [Fact]
    public void A_replica_in_a_shared_group_without_a_shared_store_is_told_that_it_would_keep_only_its_share_of_the_records()
    {
        Assert.True(Mosquitto.Available, "mosquitto is needed (./build.sh test installs it)");
        using var broker = new Mosquitto().Start();
        _h.StartHub(broker.Url, "--SharedGroup", "hubs");
        Assert.True(_h.WaitSubscribed(30_000), "the hub did not connect to the broker");
        Assert.Contains(_h.HubLog, l => l.Contains("--SharedGroup hubs without --Store", StringComparison.Ordinal));
    }

    public void Dispose() => _h.Dispose();
}
