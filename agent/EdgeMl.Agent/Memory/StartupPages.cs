using System.Globalization;
using System.Runtime.InteropServices;

namespace EdgeMl.Agent.Memory;

/// <summary>
/// Hands back to the kernel the read-only file pages that only start-up touched: ONNX Runtime's static initializers
/// register thousands of kernels and walk most of its 29 MB library once, the agent's own binary runs its start-up
/// code once, and the shared libraries it loads (OpenSSL for the uplink and package hashes, the C++ runtime) are
/// walked by their initializers. Called after the model is loaded and warmed up, and once more when the agent has
/// settled (uplink connected, the first drift window and health reports out: one-time code paths that the first call
/// could not see yet). The pages that the steady state needs fault back in on the next use (from the page cache); the
/// rest stop counting against a small device's memory. Pages another process maps too (libc) are left as they are by
/// the kernel. Linux only (madvise MADV_PAGEOUT, kernel 5.4+); elsewhere and on older kernels it does nothing.
/// Disabled with <c>Agent:ReleaseStartupPages=false</c>.
/// </summary>
public static partial class StartupPages
{
    private const int MadvPageout = 21;
    private const int MadvRandom = 1;

    /// <summary>Returns the number of bytes advised, 0 when nothing could be done.</summary>
    public static long Release()
    {
        if (!OperatingSystem.IsLinux())
        {
            return 0;
        }

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

            // Files only: not [vdso], [heap] or anonymous memory (whose pages would go to swap, not back to a file).
            var path = parts[5].Trim();
            if (!path.StartsWith('/') || path.EndsWith(" (deleted)", StringComparison.Ordinal))
            {
                continue;
            }

            var dash = parts[0].IndexOf('-', StringComparison.Ordinal);
            var start = ulong.Parse(parts[0].AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            var end = ulong.Parse(parts[0].AsSpan(dash + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (Madvise((nint)start, (nuint)(end - start), MadvPageout) == 0)
            {
                advised += (long)(end - start);
                // No read-ahead from now on: a page faulted back in comes alone, not with the 64 kB around it that
                // read-ahead would put in the page cache and fault-around would then map (most of it never used).
                _ = Madvise((nint)start, (nuint)(end - start), MadvRandom);
            }
        }

        return advised;
    }

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static partial int Madvise(nint address, nuint length, int advice);
}
