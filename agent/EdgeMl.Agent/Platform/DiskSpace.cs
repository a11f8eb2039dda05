namespace EdgeMl.Agent.Platform;

/// <summary>Tells a full file system (ENOSPC, or a quota: EDQUOT) from other I/O errors, and how much room is left.</summary>
public static class DiskSpace
{
    private const int Enospc = 28;
    private const int Edquot = 122;

    /// <summary>True when <paramref name="e"/> (or an exception it wraps, as LiteDB does) says there is no space left.</summary>
    public static bool IsFull(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is IOException io && (io.HResult is Enospc or Edquot
                || io.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase)
                || io.Message.Contains("quota exceeded", StringComparison.OrdinalIgnoreCase)))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Bytes free for this process on the file system of <paramref name="directory"/>; <see cref="long.MaxValue"/> when that cannot be told.</summary>
    public static long FreeBytes(string directory)
    {
        try
        {
            return new DriveInfo(Path.GetFullPath(directory)).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return long.MaxValue;
        }
    }
}
