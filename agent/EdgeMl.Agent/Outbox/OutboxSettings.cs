namespace EdgeMl.Agent.Outbox;

/// <summary>Bound from <c>Agent:Outbox</c>.</summary>
public sealed class OutboxSettings
{
    /// <summary>Bytes of payload the outbox may hold; past it the least important records are dropped (and counted).</summary>
    public long MaxBytes { get; set; } = 256L * 1024 * 1024;
    /// <summary>Records older than this are dropped as expired (0: never).</summary>
    public int TtlHours { get; set; } = 24 * 7;
}
