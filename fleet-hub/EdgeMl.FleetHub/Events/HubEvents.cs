using System.Text.Json;
using System.Threading.Channels;

namespace EdgeMl.FleetHub.Events;

/// <summary>
/// What the hub saw happen, for live pages (<c>GET /api/events</c>, Server-Sent Events): <c>presence</c>, <c>health</c>,
/// <c>alert</c>, <c>rollout</c>, <c>desired</c>. Each client has a bounded buffer of <see cref="ClientBuffer"/> events;
/// <see cref="Publish"/> never waits: a client whose buffer is full is dropped (its stream ends; the page reconnects and
/// reloads), so a slow client never holds up ingest. Each replica streams the events it sees itself (the devices whose
/// messages it ingests, the rollouts it leads); behind a load balancer a page follows one replica.
/// </summary>
public sealed class HubEvents
{
    /// <summary>Events kept for one client before it counts as too slow.</summary>
    public const int ClientBuffer = 512;

    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);
    private readonly Lock _gate = new();
    private readonly List<Channel<HubEvent>> _clients = [];
    private long _published;
    private long _dropped;

    /// <summary>Clients listening now.</summary>
    public int Clients
    {
        get
        {
            lock (_gate) return _clients.Count;
        }
    }

    /// <summary>Clients dropped for being too slow, since the hub started.</summary>
    public long DroppedClients => Interlocked.Read(ref _dropped);

    public long Published => Interlocked.Read(ref _published);

    /// <summary>A new client's stream of events; <see cref="Unsubscribe"/> it when the client goes. Completed (with <see cref="SlowClientException"/>) when it is dropped.</summary>
    public ChannelReader<HubEvent> Subscribe()
    {
        var channel = Channel.CreateBounded<HubEvent>(new BoundedChannelOptions(ClientBuffer) { SingleReader = true, SingleWriter = false, FullMode = BoundedChannelFullMode.Wait });
        lock (_gate) _clients.Add(channel);
        return channel.Reader;
    }

    public void Unsubscribe(ChannelReader<HubEvent> reader)
    {
        lock (_gate) _clients.RemoveAll(c => c.Reader == reader);
    }

    /// <summary>Sends <paramref name="name"/> with <paramref name="data"/> (serialized once, camelCase JSON) to every client; never blocks.</summary>
    public void Publish(string name, object data)
    {
        List<Channel<HubEvent>> clients;
        lock (_gate)
        {
            if (_clients.Count == 0) return;
            clients = [.. _clients];
        }

        Interlocked.Increment(ref _published);
        var e = new HubEvent(name, JsonSerializer.Serialize(data, data.GetType(), Web));
        foreach (var client in clients)
        {
            if (client.Writer.TryWrite(e)) continue;
            // Full: drop the client rather than wait or lose events silently (the page sees its stream end and reconnects).
            if (client.Writer.TryComplete(new SlowClientException()))
            {
                Interlocked.Increment(ref _dropped);
                lock (_gate) _clients.Remove(client);
            }
        }
    }

    public void Presence(string device, string presence, DateTimeOffset at) => Publish("presence", new PresenceEvent(device, presence, at));

    public void Health(string device, DateTimeOffset at) => Publish("health", new HealthEvent(device, at));

    public void Rollout(string id, string status) => Publish("rollout", new RolloutEvent(id, status));

    public void Desired(string device) => Publish("desired", new DesiredEvent(device));
}

/// <summary>One event: its SSE name and its JSON.</summary>
public sealed record HubEvent(string Name, string Json);

public sealed record PresenceEvent(string Device, string Presence, DateTimeOffset At);

public sealed record HealthEvent(string Device, DateTimeOffset At);

public sealed record RolloutEvent(string Id, string Status);

public sealed record DesiredEvent(string Device);

/// <summary>A client's buffer was full: it is dropped.</summary>
public sealed class SlowClientException() : Exception("the client did not keep up with the events and was dropped; reconnect");
