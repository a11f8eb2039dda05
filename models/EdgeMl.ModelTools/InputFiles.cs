namespace EdgeMl.ModelTools;

/// <summary>
/// Reads a file a user handed to the toolchain (a model, a manifest, calibration data) whole, refusing what cannot be
/// one: a directory, a missing or empty file, a device such as <c>/dev/zero</c> (its length is 0: never read to an end
/// that does not come), and files over 2 GB (a .NET array's and protobuf's limit; larger ONNX models keep their weights
/// as external data).
/// </summary>
public static class InputFiles
{
    /// <summary>Largest file read whole, in bytes (2 GB less a little, a .NET array's limit).</summary>
    public const long MaxBytes = int.MaxValue - 64;

    /// <summary>The file's bytes; <paramref name="what"/> names it in errors ("model", "manifest", "calibration data").</summary>
    /// <exception cref="ModelToolException">Not a readable regular file of 1 byte to 2 GB; the message names the file.</exception>
    public static byte[] ReadAll(string path, string what)
    {
        if (Directory.Exists(path)) throw new ModelToolException($"{what} '{path}' is a directory, not a file");
        if (!File.Exists(path)) throw new ModelToolException($"{what} '{path}' does not exist");
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            var length = stream.CanSeek ? stream.Length : -1;
            if (length == 0) throw new ModelToolException($"{what} '{path}' is empty (or a device, not a file)");
            if (length > MaxBytes)
            {
                throw new ModelToolException($"{what} '{path}' is {length / 1e9:0.0} GB; files over 2 GB cannot be read whole (an ONNX model that large keeps its weights as external data)");
            }

            if (length < 0) throw new ModelToolException($"{what} '{path}' is not a regular file (a pipe or a device)");
            var bytes = new byte[length];
            stream.ReadExactly(bytes);
            return bytes;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelToolException($"{what} '{path}' cannot be read: {e.Message}");
        }
    }
}
