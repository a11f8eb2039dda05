using System.Globalization;
using System.Text.Json;
using EdgeMl.Agent.Hosting;
using EdgeMl.Agent.Outbox;
using EdgeMl.Protocol.Health;
using EdgeMl.Protocol.Json;

using EdgeMl.CommandLine;

namespace EdgeMl.Agent.Cli;

/// <summary>
/// <c>status --data DIR [--json]</c>: the device's own status from local state only — a field engineer on
/// site with a laptop and no uplink. The outbox is read directly (read-only, also while the agent runs);
/// the model and sensor figures come from the last health report the agent saved.
/// </summary>
public static class StatusCommand
{
    public static int Run(ParsedArgs args)
    {
        var dir = args.Get("data") ?? throw new UsageException("status needs --data DIR (the agent's Agent:DataDirectory)");
        var asJson = args.Has("json");
        if (!Directory.Exists(dir))
        {
            throw new ConfigurationException("--data", $"'{dir}' does not exist");
        }

        // Whatever is wrong with a file is one line in the report; the rest is still shown.
        var problems = new List<string>();
        HealthReport? health = null;
        var healthPath = AgentRuntime.HealthPath(dir);
        if (File.Exists(healthPath))
        {
            try
            {
                var bytes = File.ReadAllBytes(healthPath);
                // System.Text.Json skips a property it does not know without decoding its name: a flipped byte there
                // would pass unnoticed (and the property it belonged to would read as missing). The agent writes UTF-8.
                if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw new JsonException("not valid UTF-8 (a damaged file)");
                health = JsonSerializer.Deserialize(bytes, ProtocolJsonContext.Default.HealthReport);
            }
            catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
            {
                problems.Add($"{healthPath}: not a health report ({OneLine(e)})");
            }
        }

        OutboxHealth? outbox = null;
        var dbPath = AgentRuntime.DeviceOutboxPath(dir);
        string? outboxNote = null;
        if (File.Exists(dbPath) && new FileInfo(dbPath).Length == 0)
        {
            outboxNote = "empty file (0 bytes): the agent starts a fresh outbox in it";
        }
        else if (File.Exists(dbPath))
        {
            try
            {
                outbox = ReadOutbox(dbPath);
            }
            catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException or LiteDB.LiteException)
            {
                // Caught mid-write by the running agent, or damaged: the agent's own last report has the figures.
                outboxNote = health?.Outbox is null
                    ? $"{dbPath} cannot be read: {OneLine(e)} (a damaged outbox is moved aside at the agent's next start)"
                    : $"read from the agent's last health report ({dbPath} cannot be read now: {OneLine(e)})";
                outbox = health?.Outbox;
            }
        }

        outbox ??= health?.Outbox;
        var free = Platform.DiskSpace.FreeBytes(dir);
        var full = outbox?.DiskFull == true || free < FullBelowBytes;
        if (asJson)
        {
            var report = health ?? new HealthReport();
            report.Outbox = outbox;
            if (report.Outbox is not null) report.Outbox.DiskFull = full;
            Console.WriteLine(JsonSerializer.Serialize(report, ProtocolJsonContext.Default.HealthReport));
            return 0;
        }

        var now = DateTimeOffset.UtcNow;
        Console.WriteLine($"edgeml-agent status — {Path.GetFullPath(dir)} (local state, no network needed)");
        Sync.DeviceIdentity? identity = null;
        try
        {
            identity = Sync.DeviceIdentity.Read(dir);
        }
        catch (Exception e) when (e is ConfigurationException or IOException or UnauthorizedAccessException)
        {
            problems.Add(OneLine(e));
        }

        foreach (var p in problems) Console.WriteLine($"problem    {p}");
        if (full)
        {
            Console.WriteLine($"DISK FULL  the data directory is full ({Size(Math.Max(0, free))} free): new records are dropped and counted until there is space");
        }

        Console.WriteLine(identity is null
            ? "device     not enrolled (edgeml-agent enroll --hub HOST --token TOKEN --data DIR)"
            : $"device     {identity.DeviceId}, enrolled {identity.EnrolledAt.ToLocalTime():yyyy-MM-dd HH:mm} at {identity.Hub} (broker {identity.Broker})");
        if (outbox is null)
        {
            Console.WriteLine($"outbox     {outboxNote ?? "none (the agent has not stored anything here yet)"}");
        }
        else
        {
            Console.WriteLine($"outbox     {outbox.Depth.Values.Sum()} records waiting, {Size(outbox.Bytes)} of {Size(outbox.MaxBytes)}{(outbox.Oldest is { } o ? $", oldest {Ago(now - o)} ago" : "")}");
            if (outbox.FileBytes > 0) Console.WriteLine($"           file {Size(outbox.FileBytes)} on disk ({dbPath} and its log)");
            Console.WriteLine($"           {"class",-10} {"waiting",8} {"dropped",8} {"expired",8}");
            foreach (var (name, depth) in outbox.Depth)
            {
                Console.WriteLine($"           {name,-10} {depth,8} {outbox.Dropped.GetValueOrDefault(name),8} {outbox.Expired.GetValueOrDefault(name),8}");
            }

            if (outbox.DroppedDiskFull.Count > 0)
            {
                Console.WriteLine($"           of the dropped, disk-full: {string.Join(", ", outbox.DroppedDiskFull.Select(kv => $"{kv.Key} {kv.Value}"))}");
            }

            if (outbox.DroppedTooLarge.Count > 0)
            {
                Console.WriteLine($"           of the dropped, too large for the broker: {string.Join(", ", outbox.DroppedTooLarge.Select(kv => $"{kv.Key} {kv.Value}"))}");
            }

            if (outbox.StoreError is { } error) Console.WriteLine($"           store: {error}");
            if (outboxNote is not null) Console.WriteLine($"           ({outboxNote})");
        }

        if (health is null)
        {
            Console.WriteLine("health     no report saved yet (the agent writes one every Agent:HealthIntervalSeconds)");
            return 0;
        }

        Console.WriteLine($"health     reported {health.At.ToLocalTime():yyyy-MM-dd HH:mm:ss} ({Ago(now - health.At)} ago), agent up {Ago(TimeSpan.FromSeconds(health.UptimeSeconds))}");
        if (health.Model is { } m)
        {
            Console.WriteLine($"model      {m.Name}@{m.Version} on {m.Provider}: {m.Predictions} predictions, {m.InferencesPerSecond:0.0}/s, latency p50 {m.LatencyP50Ms:0.000} ms p99 {m.LatencyP99Ms:0.000} ms, {m.WindowsDropped} windows dropped");
        }

        foreach (var s in health.Sensors)
        {
            Console.WriteLine($"sensor     {s.Name}: {s.State}, {s.Samples} samples, {s.Errors} errors{(s.LastError is null ? "" : $" (last: {s.LastError})")}");
        }

        foreach (var s in health.Sinks)
        {
            Console.WriteLine($"sink       {s.Name}: {s.Errors} errors, {s.DroppedDiskFull} dropped (disk-full){(s.DiskFull ? ", DISK FULL now" : "")}{(s.LastError is null ? "" : $" (last: {s.LastError})")}");
        }

        return 0;
    }

    /// <summary>
    /// The outbox read-only and shared: works while the agent runs, and never changes its files. A read that meets the
    /// agent in the middle of a write sees a page half done; a few tries a moment apart get past it.
    /// </summary>
    private static OutboxHealth ReadOutbox(string dbPath)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                using var box = new DeviceOutbox(dbPath, new OutboxSettings(), readOnly: true);
                return box.Health();
            }
            catch (Exception e) when (attempt < 5 && e is InvalidDataException or LiteDB.LiteException)
            {
                Thread.Sleep(50 * attempt);
            }
        }
    }

    /// <summary>Below this much free space the data directory counts as full (LiteDB needs room for its log and a checkpoint).</summary>
    private const long FullBelowBytes = 64 * 1024;

    private static string OneLine(Exception e) => e.Message.ReplaceLineEndings(" ").Trim();

    private static string Size(long bytes) => bytes switch
    {
        < 1024 => $"{bytes} B",
        < 1024 * 1024 => (bytes / 1024.0).ToString("0.0 kB", CultureInfo.InvariantCulture),
        _ => (bytes / 1048576.0).ToString("0.0 MB", CultureInfo.InvariantCulture),
    };

    private static string Ago(TimeSpan t) => t.TotalSeconds switch
    {
        < 90 => $"{Math.Max(0, t.TotalSeconds):0} s",
        < 5400 => $"{t.TotalMinutes:0} min",
        < 172800 => $"{t.TotalHours:0.0} h",
        _ => $"{t.TotalDays:0.0} days",
    };
}
