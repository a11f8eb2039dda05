namespace EdgeMl.FleetHub.Broker;

/// <summary>
/// What this replica did about the broker sessions of replicas that are gone (<see cref="ExternalBrokerClient"/>, its
/// Adoption part): sessions emptied and ended, and tries that failed and are retried. Exposed on <c>/metrics</c> as
/// <c>edgeml_broker_sessions_taken_over_total</c> and <c>edgeml_broker_session_takeover_failures_total</c>; 0 on a hub
/// that has no other replicas.
/// </summary>
public sealed class BrokerSessionTakeovers
{
    private long _done;
    private long _failed;

    /// <summary>Sessions of gone replicas this replica emptied (stored what was queued) and ended at the broker.</summary>
    public long Done => Interlocked.Read(ref _done);

    /// <summary>Tries that failed (the broker or the store away, a message that could not be stored); each is retried.</summary>
    public long Failed => Interlocked.Read(ref _failed);

    internal void CountDone() => Interlocked.Increment(ref _done);

    internal void CountFailed() => Interlocked.Increment(ref _failed);
}
