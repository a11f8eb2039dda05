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

        string[] lines;
        try
        {
            lines = File.ReadAllLines("/proc/self/maps");
        }
        catch (IOException)
        {
            return 0;
        }

        // A file's mappings are next to each other in /proc/self/maps (ordered by address): gather them, then advise the
        // file's ranges together. Pairs of start and length in one List<long> (the binary's size counts, see
        // PublishedBinaryTests: no new generic instantiations here).
        long advised = 0;
        var home = Path.GetFullPath(AppContext.BaseDirectory);
        var ranges = new List<long>();
        string? current = null;
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

            if (path != current)
            {
                advised += Advise(current, ranges, home);
                current = path;
                ranges.Clear();
            }

            var dash = parts[0].IndexOf('-', StringComparison.Ordinal);
            var start = long.Parse(parts[0].AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            var end = long.Parse(parts[0].AsSpan(dash + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            ranges.Add(start);
            ranges.Add(end - start);
        }

        return advised + Advise(current, ranges, home);
    }

    /// <summary>Advises one file's mappings (<paramref name="ranges"/>: start, length, …); returns the bytes paged out.</summary>
    private static long Advise(string? path, List<long> ranges, string home)
    {
        if (path is null)
        {
            return 0;
        }

        // No read-ahead from now on, and set before the page-out: a page faulted back in (by any thread, also while
        // this runs) comes alone, not with the file around it that read-ahead would put in the page cache and
        // fault-around would then map. Set after the page-out, the threads that kept running refilled most of ONNX
        // Runtime's cache in between (measured: 22 of its 28 MB cached again, 7 MB of it mapped).
        for (var i = 0; i < ranges.Count; i += 2)
        {
            _ = Madvise((nint)ranges[i], (nuint)ranges[i + 1], MadvRandom);
        }

        long advised = 0;
        for (var i = 0; i < ranges.Count; i += 2)
        {
            if (Madvise((nint)ranges[i], (nuint)ranges[i + 1], MadvPageout) == 0)
            {
                advised += ranges[i + 1];
            }
        }

        if (path.StartsWith(home, StringComparison.Ordinal))
        {
            DropFromPageCache(path, ranges);
        }

        return advised;
    }

    /// <summary>
    /// Our own files (the binary, ONNX Runtime): the page cache still holds the rest of each one, read in whole when it
    /// was loaded, in large folios on current kernels. Left there, a page that faults back in maps the cached pages
    /// around it too (fault-around: up to 64 kB, or the whole large folio), so most of the code was resident again
    /// within a minute of a release. Dropping the file's unmapped cached pages (POSIX_FADV_DONTNEED) right after the
    /// page-out leaves only what the steady state touches, page by page. A folio that a running thread mapped again
    /// in between cannot be dropped, so page-out and drop run twice. Shared system libraries are left alone: other
    /// processes use their cache.
    /// </summary>
    private static void DropFromPageCache(string path, List<long> ranges)
    {
        try
        {
            using var file = File.OpenHandle(path);
            var fd = (int)file.DangerousGetHandle();
            for (var round = 0; round < 2; round++)
            {
                if (round > 0)
                {
                    for (var i = 0; i < ranges.Count; i += 2)
                    {
                        _ = Madvise((nint)ranges[i], (nuint)ranges[i + 1], MadvPageout);
                    }
                }

                _ = Fadvise(fd, 0, 0, FadvDontNeed);
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private const int FadvDontNeed = 4;

    /// <summary>posix_fadvise(2); off_t is 64-bit on the 64-bit Linux targets the agent is built for.</summary>
    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int Fadvise(int fd, long offset, long length, int advice);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static partial int Madvise(nint address, nuint length, int advice);
}
