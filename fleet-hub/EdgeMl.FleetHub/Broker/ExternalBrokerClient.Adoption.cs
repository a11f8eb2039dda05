using System.Collections.Concurrent;
using EdgeMl.Protocol.Wire;
using MQTTnet;
using MQTTnet.Exceptions;
using MQTTnet.Protocol;

namespace EdgeMl.FleetHub.Broker;

/// <summary>
/// Replicas with <c>--SharedGroup</c> on a PostgreSQL store take over the broker session of a replica that died for good.
/// Mosquitto hands each message of a shared subscription to its members in turn, <em>including</em> members that are
/// disconnected but keep a persistent session (mosquitto <c>src/subs.c</c>, <c>subs__shared_process</c>): it queues their
/// share for them. A replica that never comes back under its <c>--ClientId</c> would take its share of every device's
/// batches into a queue nobody reads, until its session expires (24 h) and the broker drops them.
/// <para>
/// So each replica remembers its session in the store (<c>broker_sessions</c>) and holds the lease
/// <c>mqtt-session:{ClientId}</c> (a PostgreSQL advisory lock, freed with its database session when it dies). Every
/// <see cref="AdoptEvery"/> each replica looks for remembered sessions whose lease it can take: their replica is gone. It
/// then connects under that client identifier (clean start off: the broker hands it what it queued), unsubscribes the
/// session's filters so that no new share goes there, stores and acknowledges what arrives as its own (presence and update
/// reports only acknowledged: every live replica had its own copy), and once nothing came for <see cref="DrainQuiet"/>
/// and every message is acknowledged, ends the session (DISCONNECT with session expiry 0: the broker deletes it) and
/// forgets it. When the replica comes back meanwhile, its CONNECT takes the session over (the broker ends the adopter's
/// connection; what the adopter had not acknowledged is delivered again to its owner, and stored once).
/// </para>
/// </summary>
public sealed partial class ExternalBrokerClient
{
    /// <summary>How often a replica looks for dead replicas' sessions.</summary>
    private static readonly TimeSpan AdoptEvery = TimeSpan.FromSeconds(3);

    /// <summary>A dead replica's session is drained when nothing arrived for this long.</summary>
    private static readonly TimeSpan DrainQuiet = TimeSpan.FromSeconds(2);

    /// <summary>The most one drain runs; what is left stays queued for the next try.</summary>
    private static readonly TimeSpan DrainMost = TimeSpan.FromMinutes(10);

    private bool _ownSessionClaimed = true; // so that losing it is logged once

    /// <summary>Whether this replica takes part: several replicas (<c>--SharedGroup</c>) on a shared store (<c>--Store</c>).</summary>
    private bool SharesSessions => settings.SharedGroup.Length > 0 && settings.Store.Length > 0;

    private static string SessionWork(string clientId) => $"mqtt-session:{clientId}";

    /// <summary>
    /// Holds this replica's session lease (a round trip when held), and before a connect (<paramref name="remember"/>)
    /// remembers the session in the store too (a replica that took it over forgot it).
    /// </summary>
    private void ClaimOwnSession(bool remember)
    {
        try
        {
            if (remember) store.RememberBrokerSession(settings.ClientId);
            var claimed = store.Leads(SessionWork(settings.ClientId));
            if (!claimed && _ownSessionClaimed) LogOwnSessionAdopted(logger, settings.ClientId);
            _ownSessionClaimed = claimed;
        }
        catch (IOException e)
        {
            // The store is away: the next connect asks again. Meanwhile nobody can adopt this session either (same store).
            LogAdoptionProblem(logger, settings.ClientId, e.Message);
        }
    }

    /// <summary>Every <see cref="AdoptEvery"/>: takes over the sessions of replicas that are gone. Never throws but for the stop.</summary>
    private async Task AdoptLoopAsync(Func<string, MqttClientOptions> optionsFor, CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(AdoptEvery);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            // Our own lease, kept (a round trip when held) or taken again: after the store's connection broke, or after a
            // replica that thought us gone gave it back.
            if (_client is { IsConnected: true }) await Task.Run(() => ClaimOwnSession(remember: false), stoppingToken).ConfigureAwait(false);
            IReadOnlyList<string> sessions;
            try
            {
                sessions = await Task.Run(store.BrokerSessions, stoppingToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                takeovers.CountFailed();
                LogAdoptionProblem(logger, "(the list)", e.Message);
                continue;
            }

            foreach (var id in sessions.Where(id => id != settings.ClientId))
            {
                if (!await Task.Run(() => store.Leads(SessionWork(id)), stoppingToken).ConfigureAwait(false)) continue; // its replica holds it: alive (or another replica adopts it)
                try
                {
                    await AdoptAsync(id, optionsFor(id), stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    throw;
                }
                catch (Exception e)
                {
                    // The broker or the store went away mid-way: what was not acknowledged stays queued for the next try.
                    takeovers.CountFailed();
                    LogAdoptionProblem(logger, id, e.Message);
                }
                finally
                {
                    store.Release(SessionWork(id));
                }
            }
        }
    }

    private async Task AdoptAsync(string id, MqttClientOptions options, CancellationToken stoppingToken)
    {
        using var adopter = new MqttClientFactory().CreateMqttClient();
        var acks = new ConcurrentQueue<Task<bool>>();
        long received = 0;
        var last = Environment.TickCount64;
        adopter.ApplicationMessageReceivedAsync += async e =>
        {
            e.AutoAcknowledge = false;
            Interlocked.Increment(ref received);
            Interlocked.Exchange(ref last, Environment.TickCount64);
            var topic = e.ApplicationMessage.Topic;
            if (!Topics.TrySplit(topic, out _, out var subtopic) || subtopic is "status" or "state/reported")
            {
                // Every live replica had its own copy (plain subscriptions), and an old presence would undo a newer one.
                acks.Enqueue(AcknowledgeAsync(e, connection: null, stoppingToken));
                return;
            }

            try
            {
                await OnDeviceMessageAsync(e, stoppingToken, acks).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Not acknowledged: counted as such, so the session is kept (ending it would drop this message).
                LogAdoptionProblem(logger, id, $"a message on {topic} could not be handled: {ex.Message}");
                acks.Enqueue(Task.FromResult(false));
            }
        };
        var connected = await adopter.ConnectAsync(options, stoppingToken).ConfigureAwait(false);
        if (connected.ResultCode != MqttClientConnectResultCode.Success) throw new IOException($"the broker refused the session: {connected.ResultCode}");
        if (connected.IsSessionPresent)
        {
            // No new share for it from here on; what is queued still comes.
            var share = $"$share/{settings.SharedGroup}/";
            await adopter.UnsubscribeAsync(new MqttClientUnsubscribeOptionsBuilder()
                .WithTopicFilter($"{share}edgeml/+/tele").WithTopicFilter($"{share}edgeml/+/health").WithTopicFilter($"{share}edgeml/+/drift")
                .WithTopicFilter("edgeml/+/status").WithTopicFilter("edgeml/+/state/reported").Build(), stoppingToken).ConfigureAwait(false);
            var started = Environment.TickCount64;
            Interlocked.Exchange(ref last, started);
            while (adopter.IsConnected && Environment.TickCount64 - Interlocked.Read(ref last) < DrainQuiet.TotalMilliseconds
                                       && Environment.TickCount64 - started < DrainMost.TotalMilliseconds)
            {
                await Task.Delay(200, stoppingToken).ConfigureAwait(false);
            }

            if (adopter.IsConnected && Environment.TickCount64 - Interlocked.Read(ref last) < DrainQuiet.TotalMilliseconds)
            {
                // Still coming after DrainMost: keep the session (nothing unacknowledged may go with it), go on next time.
                await Task.WhenAll(acks).ConfigureAwait(false);
                await adopter.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().Build(), stoppingToken).ConfigureAwait(false);
                LogAdoptionProblem(logger, id, $"still receiving after {DrainMost.TotalMinutes:0} min ({Interlocked.Read(ref received)} messages); the rest next time");
                return;
            }
        }

        var all = await Task.WhenAll(acks).ConfigureAwait(false);
        if (!adopter.IsConnected)
        {
            // Its replica came back and took the session over: it gets what we did not acknowledge.
            LogAdoptionEndedByOwner(logger, id, Interlocked.Read(ref received));
            return;
        }

        if (all.Any(ok => !ok))
        {
            // Some could not be stored (the store failed): keep the session, so the broker delivers them again next time.
            await adopter.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection).Build(), stoppingToken)
                .ConfigureAwait(false);
            throw new IOException($"{all.Count(ok => !ok)} of {all.Length} messages were not stored; the session is kept for the next try");
        }

        // Everything stored and acknowledged: the broker deletes the session, and the store forgets it.
        await adopter.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithSessionExpiryInterval(0).Build(), stoppingToken).ConfigureAwait(false);
        store.ForgetBrokerSession(id);
        takeovers.CountDone();
        LogAdopted(logger, id, Interlocked.Read(ref received));
    }

    [LoggerMessage(EventId = 2210, Level = LogLevel.Warning,
        Message = "Took over the broker session of replica {ClientId} (it is gone): stored what the broker had queued for it ({Messages} messages) and ended the session")]
    private static partial void LogAdopted(ILogger logger, string clientId, long messages);

    [LoggerMessage(EventId = 2211, Level = LogLevel.Information,
        Message = "Replica {ClientId} came back while this replica emptied its broker session ({Messages} messages taken); it has its session again")]
    private static partial void LogAdoptionEndedByOwner(ILogger logger, string clientId, long messages);

    [LoggerMessage(EventId = 2212, Level = LogLevel.Warning, Message = "Taking over the broker session of {ClientId} failed, retrying: {Error}")]
    private static partial void LogAdoptionProblem(ILogger logger, string clientId, string error);

    [LoggerMessage(EventId = 2213, Level = LogLevel.Information,
        Message = "Another replica is emptying this replica's broker session ({ClientId}) as if it were gone; connecting takes it back")]
    private static partial void LogOwnSessionAdopted(ILogger logger, string clientId);
}
