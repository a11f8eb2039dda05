using EdgeMl.Protocol.Wire;

namespace EdgeMl.Agent.Outbox;

/// <summary>A record waiting in the outbox: its identity on the wire is (BootId, Seq).</summary>
public sealed record StoredRecord(long Id, RecordClass Class, string BootId, long Seq, DateTimeOffset CreatedAt, byte[] Payload);

/// <summary>What the outbox holds and what it had to drop, per class.</summary>
public sealed record OutboxStats(
    IReadOnlyDictionary<RecordClass, long> Depth,
    long Bytes,
    long MaxBytes,
    IReadOnlyDictionary<RecordClass, long> Dropped,
    IReadOnlyDictionary<RecordClass, long> Expired,
    DateTimeOffset? Oldest);
