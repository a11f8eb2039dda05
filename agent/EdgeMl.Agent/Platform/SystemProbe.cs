using System.Globalization;
using EdgeMl.Protocol.Health;

namespace EdgeMl.Agent.Platform;

/// <summary>
/// CPU, memory, temperature, disk and uptime of the device from <c>/proc</c> and <c>/sys/class/thermal</c>.
/// The roots are parameters so tests can hand it a recorded Raspberry Pi's files. Anything unreadable is
/// left at its default rather than failing the health report.
/// </summary>
public sealed class SystemProbe(string dataDirectory, string procRoot = "/proc", string sysRoot = "/sys")
{
    private (long Busy, long Total)? _lastCpu;

    public SystemHealth Read()
    {
        var h = new SystemHealth { Cpus = Environment.ProcessorCount };
        if (ReadCpu() is { } cpu)
        {
            if (_lastCpu is { } last && cpu.Total > last.Total)
            {
                h.CpuPercent = Math.Round(100.0 * (cpu.Busy - last.Busy) / (cpu.Total - last.Total), 1);
            }

            _lastCpu = cpu;
        }

        var load = Text("loadavg");
        if (load is not null && double.TryParse(load.Split(' ')[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var l1)) h.Load1 = l1;

        var mem = Fields("meminfo");
        if (mem.TryGetValue("MemTotal", out var total) && total > 0)
        {
            h.MemoryTotalMb = Math.Round(total / 1024.0, 1);
            if (mem.TryGetValue("MemAvailable", out var avail)) h.MemoryUsedPercent = Math.Round(100.0 * (total - avail) / total, 1);
        }

        if (Fields(Path.Combine("self", "status")).TryGetValue("VmRSS", out var rss)) h.ProcessRssMb = Math.Round(rss / 1024.0, 1);
        if (Text("uptime") is { } up && double.TryParse(up.Split(' ')[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var secs)) h.MachineUptimeSeconds = secs;

        h.ManagedHeapMb = Math.Round(GC.GetGCMemoryInfo().HeapSizeBytes / 1048576.0, 1);
        h.TemperatureC = Temperature();
        try
        {
            if (dataDirectory.Length > 0 && Directory.Exists(dataDirectory)) h.DiskFreeMb = Math.Round(new DriveInfo(Path.GetFullPath(dataDirectory)).AvailableFreeSpace / 1048576.0, 1);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // No figure rather than no report.
        }

        return h;
    }

    /// <summary>Jiffies busy and in total, summed over all CPUs (the first line of /proc/stat).</summary>
    private (long Busy, long Total)? ReadCpu()
    {
        var stat = Text("stat");
        if (stat is null || !stat.StartsWith("cpu ", StringComparison.Ordinal)) return null;
        var line = stat[..stat.IndexOf('\n', StringComparison.Ordinal)];
        var v = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(x => long.TryParse(x, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : 0).ToArray();
        if (v.Length < 5) return null;
        var idle = v[3] + v[4]; // idle + iowait
        var total = v.Take(Math.Min(v.Length, 8)).Sum(); // user nice system idle iowait irq softirq steal (guest is inside user)
        return (total - idle, total);
    }

    private double? Temperature()
    {
        var thermal = Path.Combine(sysRoot, "class", "thermal");
        if (!Directory.Exists(thermal)) return null;
        double? hottest = null;
        foreach (var zone in Directory.EnumerateDirectories(thermal, "thermal_zone*"))
        {
            try
            {
                var raw = File.ReadAllText(Path.Combine(zone, "temp")).Trim();
                if (long.TryParse(raw, NumberStyles.Integer, CultureInfo.InvariantCulture, out var milli) && milli is > -50_000 and < 200_000)
                {
                    hottest = Math.Max(hottest ?? double.MinValue, milli / 1000.0);
                }
            }
            catch (IOException)
            {
                // Some zones refuse reads (sensor off); skip them.
            }
        }

        return hottest;
    }

    private string? Text(string name)
    {
        try
        {
            return File.ReadAllText(Path.Combine(procRoot, name));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary><c>Key:   value kB</c> lines (meminfo, status) as kB numbers.</summary>
    private Dictionary<string, long> Fields(string name)
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var line in (Text(name) ?? "").Split('\n'))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0) continue;
            var value = line[(colon + 1)..].Trim().Split(' ')[0];
            if (long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n)) result[line[..colon]] = n;
        }

        return result;
    }
}
