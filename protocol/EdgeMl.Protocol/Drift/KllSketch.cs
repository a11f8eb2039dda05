namespace EdgeMl.Protocol.Drift;

/// <summary>
/// KLL quantile sketch (Karnin, Lang, Liberty 2016): compactors whose capacities shrink by 2/3 per level below
/// the top (k). An item at level h stands for 2^h samples. Normalized rank error ≈ 1.65/k with high
/// probability (k = 200: about 0.008), memory O(k) whatever the stream length, and two sketches merge into
/// one with the same guarantee. The coin flips come from a seeded generator, so a sketch is reproducible.
/// </summary>
public sealed class KllSketch
{
    private const double Shrink = 2.0 / 3.0;
    private readonly List<List<float>> _levels = [[]];
    private int[] _capacity = [];
    private int _totalCapacity;
    private ulong _rng;
    private int _size;

    public KllSketch(int k = 200, ulong seed = 0x9E3779B97F4A7C15)
    {
        if (k < 8) throw new ArgumentOutOfRangeException(nameof(k), "k must be at least 8");
        K = k;
        _rng = seed == 0 ? 1 : seed;
        Recompute();
    }

    public int K { get; }

    /// <summary>Samples summarized.</summary>
    public long N { get; private set; }

    public float Min { get; private set; } = float.PositiveInfinity;
    public float Max { get; private set; } = float.NegativeInfinity;

    /// <summary>Items retained (what the sketch costs: 4 bytes each on the wire).</summary>
    public int Retained => _size;

    public IReadOnlyList<IReadOnlyList<float>> Levels => _levels;

    public void Add(double value)
    {
        if (double.IsNaN(value)) return;
        var x = (float)value;
        _levels[0].Add(x);
        _size++;
        N++;
        if (x < Min) Min = x;
        if (x > Max) Max = x;
        if (_size >= _totalCapacity) Compress();
    }

    public void Merge(KllSketch other)
    {
        if (other.N == 0) return;
        while (_levels.Count < other._levels.Count) _levels.Add([]);
        Recompute();
        for (var h = 0; h < other._levels.Count; h++)
        {
            _levels[h].AddRange(other._levels[h]);
            _size += other._levels[h].Count;
        }

        N += other.N;
        Min = Math.Min(Min, other.Min);
        Max = Math.Max(Max, other.Max);
        Compress();
    }

    /// <summary>Estimated share of samples ≤ <paramref name="x"/>.</summary>
    public double Cdf(double x)
    {
        if (N == 0) return double.NaN;
        double weight = 0;
        for (var h = 0; h < _levels.Count; h++)
        {
            long below = 0;
            foreach (var item in _levels[h])
            {
                if (item <= x) below++;
            }

            weight += below * (double)(1L << h);
        }

        return weight / Weight();
    }

    /// <summary>The sorted retained items with their cumulative weights: a step CDF, for KS and Wasserstein.</summary>
    public (float[] Items, double[] Cumulative) SortedView()
    {
        var items = new List<(float X, long W)>(_size);
        for (var h = 0; h < _levels.Count; h++)
        {
            foreach (var item in _levels[h]) items.Add((item, 1L << h));
        }

        items.Sort((a, b) => a.X.CompareTo(b.X));
        var xs = new float[items.Count];
        var cum = new double[items.Count];
        double total = Weight(), run = 0;
        for (var i = 0; i < items.Count; i++)
        {
            run += items[i].W;
            xs[i] = items[i].X;
            cum[i] = run / total;
        }

        return (xs, cum);
    }

    public double Quantile(double q)
    {
        if (N == 0) return double.NaN;
        var (xs, cum) = SortedView();
        var i = Array.FindIndex(cum, c => c >= q);
        return xs[i < 0 ? xs.Length - 1 : i];
    }

    /// <summary>Rebuilds a sketch from its levels (the wire form).</summary>
    public static KllSketch FromLevels(int k, long n, float min, float max, IEnumerable<IEnumerable<float>> levels)
    {
        var s = new KllSketch(k) { N = n, Min = min, Max = max };
        s._levels.Clear();
        foreach (var level in levels)
        {
            var l = level.ToList();
            s._levels.Add(l);
            s._size += l.Count;
        }

        if (s._levels.Count == 0) s._levels.Add([]);
        s.Recompute();
        return s;
    }

    private double Weight()
    {
        double w = 0;
        for (var h = 0; h < _levels.Count; h++) w += _levels[h].Count * (double)(1L << h);
        return w;
    }

    /// <summary>Level capacities: k at the top, shrinking by 2/3 per level below it, at least 2.</summary>
    private void Recompute()
    {
        _capacity = new int[_levels.Count];
        _totalCapacity = 0;
        for (var h = 0; h < _levels.Count; h++)
        {
            _capacity[h] = Math.Max(2, (int)Math.Ceiling(K * Math.Pow(Shrink, _levels.Count - 1 - h)));
            _totalCapacity += _capacity[h];
        }
    }

    /// <summary>Compacts the lowest full level: sort, keep every other item (odd or even, by a coin flip), promote them.</summary>
    private void Compress()
    {
        while (_size >= _totalCapacity)
        {
            var h = 0;
            while (h < _levels.Count && _levels[h].Count < _capacity[h]) h++;
            if (h == _levels.Count) return;
            if (h + 1 == _levels.Count)
            {
                _levels.Add([]);
                Recompute();
            }

            var level = _levels[h];
            level.Sort();
            var keepOne = level.Count % 2 == 1 ? level[^1] : float.NaN;
            var pairs = level.Count / 2;
            var offset = (int)(Next() & 1);
            var up = _levels[h + 1];
            for (var i = 0; i < pairs; i++) up.Add(level[2 * i + offset]);
            level.Clear();
            _size -= 2 * pairs - pairs;
            if (!float.IsNaN(keepOne)) level.Add(keepOne);
        }
    }

    private ulong Next()
    {
        // xorshift64*: cheap, seeded, good enough for coin flips.
        _rng ^= _rng >> 12;
        _rng ^= _rng << 25;
        _rng ^= _rng >> 27;
        return (_rng * 0x2545F4914F6CDD1DUL) >> 32;
    }
}
