using System.Globalization;
using System.Runtime.InteropServices;

namespace EdgeMl.Agent.Memory;

/// <summary>
/// After the model is loaded and warmed up, hands back to the kernel the read-only file pages that only
/// start-up touched: ONNX Runtime's static initializers register thousands of kernels and walk most of
/// its 29 MB library once, and the agent's own binary runs its start-up code once. The pages that
/// inference needs fault back in on the next run (from the page cache, no disk read); the rest stop
/// counting against a small device's memory. Linux only (madvise MADV_PAGEOUT, kernel 5.4+); elsewhere
/// and on older kernels it does nothing. Disabled with <c>Agent:ReleaseStartupPages=false</c>.
/// </summary>
public static partial class StartupPages
{
    private const int MadvPageout = 21;

    /// <summary>Returns the number of bytes advised, 0 when nothing could be done.</summary>
    public static long Release()
    {
        if (!OperatingSystem.IsLinux())
        {
            return 0;
        }

        var self = Environment.ProcessPath;
        long advised = 0;
        string[] lines;
        try
        {
            lines = File.ReadAllLines("/proc/self/maps");
        }
        catch (IOException)
        {
            return 0;
        }

        foreach (var line in lines)
        {
            // address perms offset dev inode path — only read-only or executable, private, file-backed mappings.
            var parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 6 || parts[1][1] == 'w' || parts[1][3] != 'p')
            {
                continue;
            }

            var path = parts[5].Trim();
            if (!path.EndsWith("libonnxruntime.so", StringComparison.Ordinal) && !path.Contains("libonnxruntime.so.", StringComparison.Ordinal) && path != self)
            {
                continue;
            }

            var dash = parts[0].IndexOf('-', StringComparison.Ordinal);
            var start = ulong.Parse(parts[0].AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            var end = ulong.Parse(parts[0].AsSpan(dash + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (Madvise((nint)start, (nuint)(end - start), MadvPageout) == 0)
            {
                advised += (long)(end - start);
            }
        }

        return advised;
    }

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static partial int Madvise(nint address, nuint length, int advice);
}
