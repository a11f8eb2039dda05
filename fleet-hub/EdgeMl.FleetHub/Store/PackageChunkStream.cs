using Npgsql;

namespace EdgeMl.FleetHub.Store;

/// <summary>
/// A model package kept as <c>package_chunks</c> rows (<see cref="PostgresHubStore.ChunkBytes"/> each), read as a
/// seekable stream: a read fetches the one chunk under the position (one query, one pooled connection, kept until the
/// position leaves it), so an HTTP range request costs only the chunks it covers. Read errors of the database surface
/// as <see cref="IOException"/>.
/// </summary>
internal sealed class PackageChunkStream(NpgsqlDataSource db, string name, string version, long length) : Stream
{
    private byte[]? _chunk;
    private long _chunkIndex = -1;
    private long _position;

    public override bool CanRead => true;
    public override bool CanSeek => true;
    public override bool CanWrite => false;
    public override long Length => length;

    public override long Position
    {
        get => _position;
        set => _position = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), "a position cannot be negative");
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (_position >= length || buffer.Length == 0) return 0;
        var index = _position / PostgresHubStore.ChunkBytes;
        if (index != _chunkIndex) Load(index, Fetch(index));
        return Copy(buffer);
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_position >= length || buffer.Length == 0) return 0;
        var index = _position / PostgresHubStore.ChunkBytes;
        if (index != _chunkIndex) Load(index, await FetchAsync(index, cancellationToken).ConfigureAwait(false));
        return Copy(buffer.Span);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    private void Load(long index, byte[] chunk)
    {
        var expected = Math.Min(PostgresHubStore.ChunkBytes, length - (index * PostgresHubStore.ChunkBytes));
        if (chunk.Length != expected)
        {
            throw new IOException($"package {name}@{version}: chunk {index} has {chunk.Length} bytes in the database, not {expected}");
        }

        (_chunk, _chunkIndex) = (chunk, index);
    }

    private int Copy(Span<byte> buffer)
    {
        var within = (int)(_position - (_chunkIndex * PostgresHubStore.ChunkBytes));
        var n = Math.Min(buffer.Length, _chunk!.Length - within);
        _chunk.AsSpan(within, n).CopyTo(buffer);
        _position += n;
        return n;
    }

    private byte[] Fetch(long index)
    {
        try
        {
            using var c = db.OpenConnection();
            using var q = Query(c, index);
            return q.ExecuteScalar() as byte[] ?? throw Missing(index);
        }
        catch (NpgsqlException e)
        {
            throw new IOException($"package {name}@{version}: {e.Message}", e);
        }
    }

    private async Task<byte[]> FetchAsync(long index, CancellationToken cancellationToken)
    {
        try
        {
            await using var c = await db.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using var q = Query(c, index);
            return await q.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as byte[] ?? throw Missing(index);
        }
        catch (NpgsqlException e)
        {
            throw new IOException($"package {name}@{version}: {e.Message}", e);
        }
    }

    private NpgsqlCommand Query(NpgsqlConnection c, long index) => new("SELECT data FROM package_chunks WHERE name = $1 AND version = $2 AND idx = $3", c)
    {
        Parameters = { new() { Value = name }, new() { Value = version }, new() { Value = (int)index } },
    };

    private IOException Missing(long index) => new($"package {name}@{version}: chunk {index} is missing from the database");

    public override long Seek(long offset, SeekOrigin origin) => Position = origin switch
    {
        SeekOrigin.Begin => offset,
        SeekOrigin.Current => _position + offset,
        _ => length + offset,
    };

    public override void Flush()
    {
    }

    public override void SetLength(long value) => throw new NotSupportedException("a stored package is read-only");

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("a stored package is read-only");
}
