using EdgeMl.FleetHub.Events;

namespace EdgeMl.FleetHub.Tests;

/// <summary>The live event fan-out on its own: bounded per client, never waits, drops a client that does not keep up.</summary>
public sealed class HubEventsTests
{
    [Fact]
    public async Task A_client_that_does_not_read_is_dropped_while_publishing_never_waits_and_a_reading_client_gets_every_event_in_order()
    {
        var events = new HubEvents();
        var slow = events.Subscribe();
        var reading = events.Subscribe();
        var got = new List<string>();
        var started = System.Diagnostics.Stopwatch.StartNew();
        for (var chunk = 0; chunk < 8; chunk++)
        {
            for (var i = 0; i < HubEvents.ClientBuffer / 2; i++) events.Presence($"d{chunk * HubEvents.ClientBuffer / 2 + i}", "online", DateTimeOffset.UnixEpoch);
            while (reading.TryRead(out var e)) got.Add(e.Json);
        }

        Assert.True(started.ElapsedMilliseconds < 5_000, $"publishing took {started.ElapsedMilliseconds} ms");
        // The dropped client still gets what its buffer holds, then the reason (the stream says "dropped" and ends).
        var buffered = 0;
        while (slow.TryRead(out _)) buffered++;
        Assert.Equal(HubEvents.ClientBuffer, buffered);
        var ex = await Assert.ThrowsAsync<SlowClientException>(async () => await slow.Completion.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("dropped", ex.Message, StringComparison.Ordinal);
        Assert.Equal((1, 1L), (events.Clients, events.DroppedClients));
        Assert.Equal(4 * HubEvents.ClientBuffer, got.Count);
        Assert.Equal("""{"device":"d0","presence":"online","at":"1970-01-01T00:00:00+00:00"}""", got[0]);
        Assert.Contains("\"d2047\"", got[^1], StringComparison.Ordinal);
        events.Unsubscribe(reading);
        Assert.Equal(0, events.Clients);
    }
}
