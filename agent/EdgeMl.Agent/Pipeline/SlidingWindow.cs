namespace EdgeMl.Agent.Pipeline;

/// <summary>
/// Keeps the last <c>length</c> samples of the selected channels and says when a window is due
/// (every <c>hop</c> samples once full). Copying out a window is in time order, channels first or last.
/// </summary>
public sealed class SlidingWindow
{
    private readonly int[] _channelIndex;
    private readonly float[] _ring; // [length, channels], row = sample
    private readonly int _length;
    private readonly int _hop;
    private int _head;
    private long _count;
    private int _sinceLast;

    /// <param name="channelIndex">for each model channel, its index in the source's sample</param>
    public SlidingWindow(int[] channelIndex, int length, int hop)
    {
        _channelIndex = channelIndex;
        _length = length;
        _hop = hop;
        _ring = new float[length * channelIndex.Length];
    }

    public int Length => _length;
    public int Channels => _channelIndex.Length;

    /// <summary>Adds one source sample; true when a window is due.</summary>
    public bool Add(ReadOnlySpan<float> sample)
    {
        var row = _ring.AsSpan(_head * _channelIndex.Length, _channelIndex.Length);
        for (var c = 0; c < _channelIndex.Length; c++)
        {
            row[c] = sample[_channelIndex[c]];
        }

        _head = (_head + 1) % _length;
        _count++;
        if (_count < _length)
        {
            return false;
        }

        if (_count == _length || ++_sinceLast >= _hop)
        {
            _sinceLast = 0;
            return true;
        }

        return false;
    }

    /// <summary>Copies the current window, oldest sample first, as [T, C] (channels last) into <paramref name="destination"/>.</summary>
    public void CopyTo(Span<float> destination)
    {
        var c = _channelIndex.Length;
        var tail = _ring.AsSpan(_head * c);
        tail.CopyTo(destination);
        _ring.AsSpan(0, _head * c).CopyTo(destination[tail.Length..]);
    }

    public void Clear()
    {
        _head = 0;
        _count = 0;
        _sinceLast = 0;
    }
}
