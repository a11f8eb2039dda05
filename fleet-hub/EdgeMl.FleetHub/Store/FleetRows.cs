namespace EdgeMl.FleetHub.Store;

/// <summary>
/// Filters, sorts, pages and counts compact device rows in memory: what the embedded store does over its per-device
/// summary documents (a few hundred bytes each: 10,000 devices are read in a few milliseconds). PostgreSQL does the
/// same in SQL; the contract tests hold both to the same answers.
/// </summary>
public static class FleetRows
{
    public static DevicePage Page(IEnumerable<DeviceRow> rows, DeviceQuery q)
    {
        var matching = rows.Where(r => Matches(r, q)).ToList();
        IComparer<DeviceRow> order = new RowOrder(q.Sort, q.Descending);
        matching.Sort(order);
        var items = q.Offset >= matching.Count ? [] : matching.Skip((int)q.Offset).Take(q.PageSize).ToList();
        return new DevicePage(matching.Count, q.Page, q.PageSize, items);
    }

    public static bool Matches(DeviceRow r, DeviceQuery q) =>
        (q.Q is null || r.Id.Contains(q.Q, StringComparison.OrdinalIgnoreCase) || (r.Group?.Contains(q.Q, StringComparison.OrdinalIgnoreCase) ?? false))
        && (q.Group is null || r.Group == q.Group)
        && (q.Status is null || q.Status == r.Presence || q.Status == r.Enrollment || (q.Status == "unhealthy" && r.Healthy == false))
        && (q.Model is null || (r.Model == q.Model && (q.ModelVersion is null || r.Version == q.ModelVersion)))
        && (q.TagKey is null || (r.Tags.TryGetValue(q.TagKey, out var v) && (q.TagValue is null || v == q.TagValue)))
        && (q.Drift is null || q.Drift switch
        {
            "drifting" => FleetPresence.Drifting(r.DriftStatus),
            "none" => FleetPresence.DriftRank(r.DriftStatus) == 0,
            _ => r.DriftStatus == q.Drift,
        });

    public static FleetSummary Summarize(IReadOnlyCollection<DeviceRow> rows)
    {
        var groups = rows.Where(r => r.Group is not null).GroupBy(r => r.Group!, StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => Counts(g.Key, g.ToList())).ToList();
        var models = rows.Where(r => r.Model is not null).GroupBy(r => (r.Model!, r.Version ?? ""))
            .Select(g => new ModelCount(g.Key.Item1, g.Key.Item2, g.LongCount()))
            .OrderBy(m => m.Name, StringComparer.Ordinal).ThenBy(m => m.Version, StringComparer.Ordinal).ToList();
        return new FleetSummary(Counts(null, rows), groups, models);
    }

    private static FleetCounts Counts(string? group, IReadOnlyCollection<DeviceRow> rows) => new(
        group, rows.Count, rows.LongCount(r => r.Presence == FleetPresence.Online), rows.LongCount(r => r.Presence == FleetPresence.Offline),
        rows.LongCount(r => r.Presence == FleetPresence.NeverSeen), rows.LongCount(r => r.Healthy == false), rows.LongCount(r => FleetPresence.Drifting(r.DriftStatus)));

    /// <summary>One field, ascending or descending; rows without a value come last either way; ties by id (ordinal).</summary>
    private sealed class RowOrder(string field, bool descending) : IComparer<DeviceRow>
    {
        public int Compare(DeviceRow? a, DeviceRow? b)
        {
            var c = field switch
            {
                "id" => 0,
                "group" => Text(a!.Group, b!.Group),
                "presence" => Text(a!.Presence, b!.Presence),
                "lastSeen" => Value(a!.LastSeen, b!.LastSeen),
                "model" => Text(a!.Model is null ? null : $"{a.Model}@{a.Version}", b!.Model is null ? null : $"{b.Model}@{b.Version}"),
                "p99Ms" => Value(a!.P99Ms, b!.P99Ms),
                "cpuPercent" => Value(a!.CpuPercent, b!.CpuPercent),
                "temperatureC" => Value(a!.TemperatureC, b!.TemperatureC),
                "outboxDepth" => Value(a!.OutboxDepth, b!.OutboxDepth),
                "driftStatus" => Value(a!.DriftStatus is null ? (int?)null : FleetPresence.DriftRank(a.DriftStatus), b!.DriftStatus is null ? (int?)null : FleetPresence.DriftRank(b.DriftStatus)),
                _ => 0,
            };
            return c != 0 ? c : (descending && field == "id" ? -1 : 1) * string.CompareOrdinal(a!.Id, b!.Id);
        }

        private int Text(string? x, string? y) =>
            x is null ? (y is null ? 0 : 1) : y is null ? -1 : (descending ? -1 : 1) * string.CompareOrdinal(x, y);

        private int Value<T>(T? x, T? y) where T : struct, IComparable<T> =>
            x is null ? (y is null ? 0 : 1) : y is null ? -1 : (descending ? -1 : 1) * x.Value.CompareTo(y.Value);
    }
}
