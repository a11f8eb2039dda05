using System.Diagnostics;

namespace EdgeMl.TestUtilities;

/// <summary>
/// A real, small file system (tmpfs of a given size) for disk-full tests, mounted on a fresh folder and unmounted
/// (lazily, so an open file cannot keep it) at dispose, also when the test failed. Needs root and a kernel that lets
/// this process mount: <see cref="TryMount"/> says why not otherwise, so the test can skip with that reason.
/// </summary>
public sealed class SmallFileSystem : IDisposable
{
    private readonly TempDirectory _mountPoint = new();
    private bool _mounted;

    private SmallFileSystem()
    {
    }

    /// <summary>The mounted folder.</summary>
    public string Path => _mountPoint.Path;

    /// <summary>Mounts a tmpfs of <paramref name="sizeKb"/> kB, or returns null with why it could not.</summary>
    public static SmallFileSystem? TryMount(int sizeKb, out string? whyNot)
    {
        var fs = new SmallFileSystem();
        var (code, error) = Run("/bin/mount", "-t", "tmpfs", "-o", $"size={sizeKb}k", "tmpfs", fs.Path);
        if (code != 0)
        {
            fs.Dispose();
            whyNot = $"cannot mount a {sizeKb} kB tmpfs (needs root and mount permission): {error.Trim()}";
            return null;
        }

        fs._mounted = true;
        whyNot = null;
        return fs;
    }

    /// <summary>Takes all free space but <paramref name="leaveBytes"/> with a filler file; <see cref="Free"/> gives it back.</summary>
    public void Fill(long leaveBytes = 0)
    {
        var filler = System.IO.Path.Combine(Path, "filler");
        using var f = new FileStream(filler, FileMode.Append, FileAccess.Write);
        var block = new byte[4096];
        try
        {
            while (new DriveInfo(Path).AvailableFreeSpace > leaveBytes + block.Length) f.Write(block);
            f.Flush();
        }
        catch (IOException)
        {
            // Full already.
        }
    }

    /// <summary>Deletes the filler: space comes back.</summary>
    public void Free() => File.Delete(System.IO.Path.Combine(Path, "filler"));

    public void Dispose()
    {
        if (_mounted) Run("/bin/umount", "-l", Path);
        _mounted = false;
        _mountPoint.Dispose();
    }

    private static (int Code, string Error) Run(string exe, params string[] args)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(exe, args) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false })!;
            var err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, err);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, e.Message);
        }
    }
}
