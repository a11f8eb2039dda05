using System.Buffers;
using System.Text;
using System.Text.Json;
using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Dashboard;

/// <summary>
/// A device's health history over a time range, downsampled for charts (<c>GET /api/devices/{id}/health/series</c>): the
/// range [since, until) is cut into <c>points</c> buckets of equal length, and each bucket that holds reports keeps, per
/// measure (<see cref="Measures"/>), the smallest and the largest value and the value of its newest report, at that
/// report's time. A spike inside a bucket therefore still shows (min/max), and a line through the <c>last</c> values
/// passes only through values the device really reported. A bucket holding one report is that report exactly, so a range
/// with fewer reports than buckets comes back whole. A day at 5 s (17,280 reports, ~11 MB of JSON) becomes at most
/// <c>points</c> entries per measure; the measures are read from each report's JSON with <see cref="Utf8JsonReader"/>
/// (the rest of the report is skipped), so the hub never builds the reports' objects.
/// </summary>
public static class HealthSeries
{
    /// <summary>
    /// The measures, as the health report names them: system.cpuPercent, system.memoryUsedPercent, system.processRssMb,
    /// system.temperatureC, system.diskFreeMb, model.inferencesPerSecond, model.latencyP50Ms, model.latencyP99Ms,
    /// model.windowsDropped, and outboxDepth (the sum of outbox.depth over the record classes).
    /// </summary>
    public static readonly IReadOnlyList<string> Measures =
    [
        "cpuPercent", "memoryUsedPercent", "processRssMb", "temperatureC", "diskFreeMb",
        "inferencesPerSecond", "latencyP50Ms", "latencyP99Ms", "windowsDropped", "outboxDepth",
    ];

    /// <summary>Most buckets one request may ask for.</summary>
    public const int MaxPoints = 5000;

    /// <summary>Most reports read for one series (a day at 1 s); when the range holds more, the newest are used and <c>truncated</c> says so.</summary>
    public const int MaxReports = 100_000;

    /// <summary>
    /// Downsamples <paramref name="reports"/> (health records, any order; those outside [since, until) are left out) into
    /// <paramref name="points"/> buckets. <paramref name="truncated"/> is passed through to the answer.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">points is not 1..<see cref="MaxPoints"/>, or since is not before until.</exception>
    public static HealthSeriesView Of(IEnumerable<HubRecord> reports, DateTimeOffset since, DateTimeOffset until, int points, bool truncated = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(points, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(points, MaxPoints);
        var from = since.ToUnixTimeMilliseconds();
        var to = until.ToUnixTimeMilliseconds();
        var span = to - from;
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(span, 0, nameof(until));
        var m = Measures.Count;
        var min = new double[points * m];
        var max = new double[points * m];
        var last = new double[points * m];
        var lastAt = new long[points];
        var count = new int[points];
        Array.Fill(min, double.NaN);
        Array.Fill(max, double.NaN);
        Array.Fill(last, double.NaN);
        Array.Fill(lastAt, long.MinValue);
        Span<double> values = stackalloc double[m];
        byte[] buffer = ArrayPool<byte>.Shared.Rent(4096);
        var read = 0;
        try
        {
            foreach (var r in reports)
            {
                if (r.At < from || r.At >= to) continue;
                var b = (int)((Int128)(r.At - from) * points / span);
                read++;
                count[b]++;
                var bytes = Encoding.UTF8.GetMaxByteCount(r.Data.Length);
                if (bytes > buffer.Length)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = ArrayPool<byte>.Shared.Rent(bytes);
                }

                Extract(buffer.AsSpan(0, Encoding.UTF8.GetBytes(r.Data, buffer)), values);
                var newest = r.At >= lastAt[b];
                if (newest) lastAt[b] = r.At;
                for (var k = 0; k < m; k++)
                {
                    var v = values[k];
                    var i = b * m + k;
                    if (newest) last[i] = v; // the newest report's own value (NaN when it has none): the line stays true to it
                    if (double.IsNaN(v)) continue;
                    if (double.IsNaN(min[i]) || v < min[i]) min[i] = v;
                    if (double.IsNaN(max[i]) || v > max[i]) max[i] = v;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        var filled = Enumerable.Range(0, points).Where(b => count[b] > 0).ToList();
        var series = new Dictionary<string, MeasureSeries>(m, StringComparer.Ordinal);
        for (var k = 0; k < m; k++)
        {
            var kk = k;
            double?[] Pick(double[] source) => filled.Select(b => source[b * m + kk] is var v && double.IsNaN(v) ? (double?)null : v).ToArray();
            series[Measures[k]] = new MeasureSeries(Pick(min), Pick(max), Pick(last));
        }

        return new HealthSeriesView(since, until, points, Math.Max(1, span / points), read, truncated,
            filled.Select(b => lastAt[b]).ToList(), filled.Select(b => count[b]).ToList(), series);
    }

    /// <summary>
    /// The measures of one report's JSON into <paramref name="values"/> (NaN where it has none); JSON that is not an object
    /// (an older hub's record) gives all NaN.
    /// </summary>
    internal static void Extract(ReadOnlySpan<byte> json, Span<double> values)
    {
        values.Fill(double.NaN);
        try
        {
            var reader = new Utf8JsonReader(json);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var section = reader.ValueTextEquals("system"u8) ? 1 : reader.ValueTextEquals("model"u8) ? 2 : reader.ValueTextEquals("outbox"u8) ? 3 : 0;
                reader.Read();
                if (section == 0 || reader.TokenType != JsonTokenType.StartObject)
                {
                    reader.Skip();
                    continue;
                }

                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var index = section switch
                    {
                        1 => reader.ValueTextEquals("cpuPercent"u8) ? 0 : reader.ValueTextEquals("memoryUsedPercent"u8) ? 1 : reader.ValueTextEquals("processRssMb"u8) ? 2
                            : reader.ValueTextEquals("temperatureC"u8) ? 3 : reader.ValueTextEquals("diskFreeMb"u8) ? 4 : -1,
                        2 => reader.ValueTextEquals("inferencesPerSecond"u8) ? 5 : reader.ValueTextEquals("latencyP50Ms"u8) ? 6 : reader.ValueTextEquals("latencyP99Ms"u8) ? 7
                            : reader.ValueTextEquals("windowsDropped"u8) ? 8 : -1,
                        _ => reader.ValueTextEquals("depth"u8) ? 9 : -1,
                    };
                    reader.Read();
                    if (index == 9 && reader.TokenType == JsonTokenType.StartObject)
                    {
                        double sum = 0;
                        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                        {
                            reader.Read();
                            if (reader.TokenType == JsonTokenType.Number) sum += reader.GetDouble();
                            else reader.Skip();
                        }

                        values[9] = sum;
                    }
                    else if (index >= 0 && reader.TokenType == JsonTokenType.Number)
                    {
                        values[index] = reader.GetDouble();
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
            }
        }
        catch (JsonException)
        {
            // Not a health report after all: what was read so far stands, the rest stays empty.
        }
    }
}

/// <summary>
/// <c>GET /api/devices/{id}/health/series</c>: the range, the buckets asked for and their length, how many reports were
/// read (<see cref="Truncated"/>: the range held more than <see cref="HealthSeries.MaxReports"/>, the newest were used),
/// then per bucket that holds reports (oldest first) the time of its newest report (<see cref="At"/>, ms since the epoch,
/// the device's clock) and how many it holds; <see cref="Series"/> by measure (<see cref="HealthSeries.Measures"/>).
/// </summary>
public sealed record HealthSeriesView(
    DateTimeOffset Since, DateTimeOffset Until, int Points, long BucketMs, int Reports, bool Truncated, List<long> At, List<int> Count,
    Dictionary<string, MeasureSeries> Series);

/// <summary>One measure per bucket: smallest, largest, and the newest report's value; null where no report in the bucket had it.</summary>
public sealed record MeasureSeries(double?[] Min, double?[] Max, double?[] Last);
