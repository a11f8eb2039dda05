namespace EdgeMl.Agent.Outbox;

/// <summary>
/// A read-only view of a LiteDB file for <c>status</c>: its length is cut to whole 8 kB pages, and whatever LiteDB
/// would change (it crops a last page that a full disk or a power loss left half written) is ignored, so a reader
/// never writes to the running agent's files and can still read one that ends in a partial page.
/// </summary>
internal sealed class ReadOnlyPageStream(Stream inner) : Stream
{
    private const int PageSize = 8192;

    public override bool CanRead => true;
    public override bool CanSeek => true;
    public override bool CanWrite => false;
    public override long Length => inner.Length / PageSize * PageSize;

    public override long Position
    {
        get => inner.Position;
        set => inner.Position = value;
    }

    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, (int)Math.Max(0, Math.Min(count, Length - inner.Position)));

    public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);

    /// <summary>Ignored: the file is the agent's; a reader leaves it as it is.</summary>
    public override void SetLength(long value)
    {
    }

    public override void Flush()
    {
    }

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("the outbox is open read-only");

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }
}
