using System.Globalization;
using EdgeMl.FleetHub.Dashboard;
using EdgeMl.FleetHub.Store;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// The health charts' downsampling (<see cref="HealthSeries"/>), checked against the raw reports it was made of: per bucket
/// the min and max of every measure and the newest report's value at its time.
/// </summary>
public sealed class HealthSeriesTests
{
    private static readonly DateTimeOffset Since = new(2026, 11, 29, 0, 0, 0, TimeSpan.Zero);

    private sealed record Raw(long At, double Cpu, double? Temp, double P99, long Depth);

    private static string Json(Raw r) =>
        "{\"at\":\"2026-11-29T00:00:00Z\",\"uptimeSeconds\":5,\"sensors\":[{\"name\":\"s\",\"state\":\"ok\"}],"
        + $"\"model\":{{\"name\":\"m\",\"version\":\"1\",\"windowsDropped\":3,\"latencyP50Ms\":0.5,\"latencyP99Ms\":{F(r.P99)},\"inferencesPerSecond\":8}},"
        + $"\"outbox\":{{\"depth\":{{\"telemetry\":{r.Depth},\"health\":2}},\"bytes\":10}},"
        + $"\"system\":{{\"cpus\":4,\"cpuPercent\":{F(r.Cpu)},\"memoryUsedPercent\":40,\"processRssMb\":38.5,\"diskFreeMb\":8000"
        + (r.Temp is { } t ? $",\"temperatureC\":{F(t)}" : "") + "}}";

    private static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    private static HubRecord Record(Raw r) => new("b1", r.At, "health", r.At, Json(r));

    [Fact]
    public void Each_bucket_keeps_the_min_and_max_of_its_reports_and_the_newest_reports_value_at_its_time()
    {
        var random = new Random(7);
        var until = Since.AddHours(6);
        var raw = Enumerable.Range(0, 4000).Select(_ => new Raw(
            Since.ToUnixTimeMilliseconds() + random.NextInt64(6 * 3_600_000), Math.Round(random.NextDouble() * 100, 3), random.Next(4) == 0 ? null : 40 + random.Next(30),
            random.NextDouble() * 5, random.Next(50))).DistinctBy(r => r.At).ToList();
        const int points = 37;
        // Any order in: the store answers newest first, a resend can arrive late.
        var series = HealthSeries.Of(raw.OrderBy(_ => random.Next()).Select(Record), Since, until, points);

        var span = (long)(until - Since).TotalMilliseconds;
        var expected = raw.GroupBy(r => (r.At - Since.ToUnixTimeMilliseconds()) * points / span).OrderBy(g => g.Key).ToList();
        Assert.Equal(expected.Count, series.At.Count);
        Assert.Equal(raw.Count, series.Reports);
        Assert.False(series.Truncated);
        for (var i = 0; i < expected.Count; i++)
        {
            var inside = expected[i].ToList();
            var newest = inside.MaxBy(r => r.At)!;
            Assert.Equal(newest.At, series.At[i]);
            Assert.Equal(inside.Count, series.Count[i]);
            Assert.Equal(inside.Min(r => r.Cpu), series.Series["cpuPercent"].Min[i]);
            Assert.Equal(inside.Max(r => r.Cpu), series.Series["cpuPercent"].Max[i]);
            Assert.Equal(newest.Cpu, series.Series["cpuPercent"].Last[i]);
            Assert.Equal(inside.Max(r => r.P99), series.Series["latencyP99Ms"].Max[i]);
            Assert.Equal(inside.Min(r => r.Depth + 2.0), series.Series["outboxDepth"].Min[i]); // the sum over the classes
            // A measure some reports lack: min/max over those that have it; the line keeps the newest report's own (missing) value.
            var temps = inside.Where(r => r.Temp is not null).Select(r => r.Temp!.Value).ToList();
            Assert.Equal(temps.Count == 0 ? null : (double?)temps.Min(), series.Series["temperatureC"].Min[i]);
            Assert.Equal(temps.Count == 0 ? null : (double?)temps.Max(), series.Series["temperatureC"].Max[i]);
            Assert.Equal(newest.Temp, series.Series["temperatureC"].Last[i]);
        }

        Assert.Equal(HealthSeries.Measures, series.Series.Keys);
        Assert.All(series.Series.Values, s => Assert.True(s.Min.Length == series.At.Count && s.Max.Length == series.At.Count && s.Last.Length == series.At.Count));
    }

    [Fact]
    public void Fewer_reports_than_buckets_come_back_whole_and_reports_outside_the_range_are_left_out()
    {
        var raw = new[] { 10_000L, 70_000, 130_000, 3_599_999 }.Select((ms, i) => new Raw(Since.ToUnixTimeMilliseconds() + ms, i * 10.5, 50 + i, 1.25, i)).ToList();
        var outside = new[] { new Raw(Since.ToUnixTimeMilliseconds() - 1, 99, 99, 9, 9), new Raw(Since.AddHours(1).ToUnixTimeMilliseconds(), 99, 99, 9, 9) };
        var series = HealthSeries.Of(raw.Concat(outside).Select(Record), Since, Since.AddHours(1), 500);
        Assert.Equal(raw.Select(r => r.At), series.At);
        Assert.Equal(raw.Select(r => (double?)r.Cpu), series.Series["cpuPercent"].Last);
        Assert.Equal(raw.Select(r => (double?)r.Cpu), series.Series["cpuPercent"].Min);
        Assert.Equal(raw.Select(r => (double?)r.Cpu), series.Series["cpuPercent"].Max);
        Assert.Equal(raw.Select(_ => (double?)38.5), series.Series["processRssMb"].Last);
        Assert.Equal(4, series.Reports);
        Assert.Equal(3_600_000 / 500, series.BucketMs);
    }

    [Fact]
    public void A_record_that_is_not_a_health_report_counts_but_has_no_values()
    {
        var good = new Raw(Since.ToUnixTimeMilliseconds() + 1000, 12, null, 1, 0);
        HubRecord[] records = [Record(good), new("b1", 2, "health", Since.ToUnixTimeMilliseconds() + 2000, "[1,2"), new("b1", 3, "health", Since.ToUnixTimeMilliseconds() + 3000, "{\"system\":7}")];
        var series = HealthSeries.Of(records, Since, Since.AddMinutes(1), 1);
        Assert.Equal((3, Since.ToUnixTimeMilliseconds() + 3000), (series.Count.Single(), series.At.Single()));
        Assert.Equal((12.0, 12.0), (series.Series["cpuPercent"].Min.Single(), series.Series["cpuPercent"].Max.Single()));
        Assert.Null(series.Series["cpuPercent"].Last.Single()); // the newest record had none
    }

    [Fact]
    public void Points_outside_one_to_the_maximum_and_an_empty_range_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => HealthSeries.Of([], Since, Since.AddHours(1), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => HealthSeries.Of([], Since, Since.AddHours(1), HealthSeries.MaxPoints + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => HealthSeries.Of([], Since, Since, 10));
        Assert.Empty(HealthSeries.Of([], Since, Since.AddHours(1), 10).At);
    }
}
