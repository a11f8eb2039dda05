namespace EdgeMl.FleetHub.Store;

/// <summary>
/// The sequence numbers already stored for one (device, boot, record class): everything up to a watermark,
/// plus the few ranges above it that arrived early. A device sends live records before an outage's backlog
/// of the same boot, so "highest seen" alone would take the backlog for duplicates; the ranges close as the
/// gaps fill and the watermark moves up. Exact, and small: a handful of ranges at most in practice. A device
/// that sends only every other number cannot make it grow without bound: past <see cref="MaxRanges"/> the lowest
/// gap is given up (the watermark jumps over it), so a record arriving later in that gap counts as a duplicate.
/// </summary>
public sealed class SeqSet
{
    /// <summary>Ranges kept above the watermark (bounded per-device state on the hub).</summary>
    public const int MaxRanges = 1024;

    private readonly List<(long Lo, long Hi)> _ranges; // sorted, disjoint, non-adjacent, all above the watermark

    public SeqSet(long watermark, IEnumerable<(long Lo, long Hi)>? ranges = null)
    {
        Watermark = watermark;
        _ranges = ranges?.OrderBy(r => r.Lo).ToList() ?? [];
    }

    /// <summary>Every sequence number up to here is stored.</summary>
    public long Watermark { get; private set; }

    public IReadOnlyList<(long Lo, long Hi)> Ranges => _ranges;

    public bool Changed { get; private set; }

    /// <summary>Adds <paramref name="seq"/>; false when it was already there (a duplicate).</summary>
    public bool Add(long seq)
    {
        if (seq <= Watermark) return false;
        var i = 0;
        while (i < _ranges.Count && _ranges[i].Hi < seq - 1) i++;
        if (i < _ranges.Count && seq >= _ranges[i].Lo && seq <= _ranges[i].Hi) return false;

        if (i < _ranges.Count && _ranges[i].Hi == seq - 1)
        {
            // Extends range i upward, maybe joining it with the next one.
            var hi = seq;
            if (i + 1 < _ranges.Count && _ranges[i + 1].Lo == seq + 1)
            {
                hi = _ranges[i + 1].Hi;
                _ranges.RemoveAt(i + 1);
            }

            _ranges[i] = (_ranges[i].Lo, hi);
        }
        else if (i < _ranges.Count && _ranges[i].Lo == seq + 1)
        {
            _ranges[i] = (seq, _ranges[i].Hi);
        }
        else
        {
            _ranges.Insert(i, (seq, seq));
        }

        // The lowest range touching the watermark folds into it; past the bound, the lowest gap is given up.
        if (_ranges.Count > 0 && (_ranges[0].Lo == Watermark + 1 || _ranges.Count > MaxRanges))
        {
            Watermark = _ranges[0].Hi;
            _ranges.RemoveAt(0);
        }

        Changed = true;
        return true;
    }
}
