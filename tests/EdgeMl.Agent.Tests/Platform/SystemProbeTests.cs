using EdgeMl.Agent.Platform;
using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Platform;

/// <summary>The device figures in health, read from a Raspberry Pi's /proc and /sys files laid out in a directory.</summary>
public sealed class SystemProbeTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    private string Proc => Path.Combine(_dir.Path, "proc");
    private string Sys => Path.Combine(_dir.Path, "sys");

    private void Write(string path, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
    }

    private void Stat(long user, long system, long idle, long iowait) =>
        Write(Path.Combine(Proc, "stat"), $"cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1 2 3\n");

    public SystemProbeTests()
    {
        Write(Path.Combine(Proc, "loadavg"), "1.25 0.80 0.60 2/187 4242\n");
        Write(Path.Combine(Proc, "uptime"), "86412.50 300000.00\n");
        Write(Path.Combine(Proc, "meminfo"), "MemTotal:        3884096 kB\nMemFree:          512000 kB\nMemAvailable:    2913072 kB\nBuffers:           40000 kB\n");
        Write(Path.Combine(Proc, "self", "status"), "Name:\tedgeml-agent\nVmPeak:\t  120000 kB\nVmRSS:\t   36864 kB\nThreads:\t12\n");
        Write(Path.Combine(Sys, "class", "thermal", "thermal_zone0", "temp"), "48312\n");
        Write(Path.Combine(Sys, "class", "thermal", "thermal_zone1", "temp"), "51000\n");
        Directory.CreateDirectory(Path.Combine(Sys, "class", "thermal", "thermal_zone2")); // a zone that cannot be read
    }

    [Fact]
    public void Reads_cpu_from_the_change_between_reports_and_memory_temperature_load_disk_and_uptime()
    {
        var probe = new SystemProbe(_dir.Path, Proc, Sys);
        Stat(user: 1000, system: 500, idle: 8000, iowait: 500);
        var first = probe.Read();
        Assert.Equal(0, first.CpuPercent); // no earlier report to compare with

        Stat(user: 1600, system: 700, idle: 8900, iowait: 600); // +800 busy of +1800
        var h = probe.Read();
        Assert.Equal(44.4, h.CpuPercent, 1);
        Assert.Equal(1.25, h.Load1);
        Assert.Equal(3793.1, h.MemoryTotalMb, 1);
        Assert.Equal(25.0, h.MemoryUsedPercent, 1);
        Assert.Equal(36.0, h.ProcessRssMb, 1);
        Assert.Equal(51.0, h.TemperatureC); // the hottest zone
        Assert.Equal(86412.5, h.MachineUptimeSeconds);
        Assert.True(h.DiskFreeMb > 0, "free space of the data directory's file system");
    }

    [Fact]
    public void A_board_without_thermal_zones_reports_no_temperature_rather_than_zero()
    {
        Directory.Delete(Path.Combine(Sys, "class", "thermal"), recursive: true);
        Stat(1, 1, 1, 1);
        Assert.Null(new SystemProbe(_dir.Path, Proc, Sys).Read().TemperatureC);
    }

    public void Dispose() => _dir.Dispose();
}
