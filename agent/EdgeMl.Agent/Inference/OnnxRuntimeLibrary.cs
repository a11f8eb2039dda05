using System.Reflection;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;

namespace EdgeMl.Agent.Inference;

/// <summary>
/// Points ONNX Runtime at a native library chosen by the user (<c>Agent:Inference:OnnxRuntimeLibrary</c>).
/// NuGet has no CUDA build of ONNX Runtime for linux-arm64, so on a Jetson the agent loads the
/// JetPack/onnxruntime-gpu <c>libonnxruntime.so</c> the device already has. Must run before any other
/// ONNX Runtime call; later calls are ignored.
/// </summary>
public static class OnnxRuntimeLibrary
{
    private static string? s_path;
    private static IntPtr s_handle;

    public static string? LoadedFrom => s_path;

    /// <summary>The file the process really mapped ONNX Runtime from (Linux: /proc/self/maps), or null if unknown.</summary>
    public static string? MappedFile()
    {
        try
        {
            return File.ReadLines("/proc/self/maps")
                .Select(l => l.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries))
                .Where(p => p.Length == 6 && Path.GetFileName(p[5].Trim()).StartsWith("libonnxruntime.so", StringComparison.Ordinal))
                .Select(p => p[5].Trim())
                .FirstOrDefault();
        }
        catch (IOException)
        {
            return null;
        }
    }

    public static void Use(string? path)
    {
        if (string.IsNullOrWhiteSpace(path) || s_path is not null)
        {
            return;
        }

        var full = Path.GetFullPath(path);
        if (!File.Exists(full))
        {
            throw new ConfigurationException("Agent:Inference:OnnxRuntimeLibrary", $"'{path}' does not exist");
        }

        try
        {
            s_handle = NativeLibrary.Load(full);
        }
        catch (DllNotFoundException e)
        {
            throw new ConfigurationException("Agent:Inference:OnnxRuntimeLibrary", $"'{path}' cannot be loaded: {e.Message}");
        }

        s_path = full;
        OrtEnv.DisableDllImportResolver = true;
        NativeLibrary.SetDllImportResolver(typeof(OrtEnv).Assembly, Resolve);
    }

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath) =>
        libraryName.Contains("onnxruntime", StringComparison.OrdinalIgnoreCase) && !libraryName.Contains("extensions", StringComparison.OrdinalIgnoreCase)
            ? s_handle
            : IntPtr.Zero;
}
