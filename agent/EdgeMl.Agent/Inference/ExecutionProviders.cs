using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace EdgeMl.Agent.Inference;

/// <summary>
/// Chooses the execution provider. CUDA and TensorRT are used only when the loaded ONNX Runtime library
/// has them (the NuGet CPU build does not; a Jetson's does); otherwise the agent warns and runs on CPU.
/// </summary>
public static partial class ExecutionProviders
{
    public const string Cpu = "cpu";
    public const string Cuda = "cuda";
    public const string TensorRt = "tensorrt";

    public static string Apply(SessionOptions options, InferenceSettings settings, ILogger? logger)
    {
        var wanted = settings.Provider.ToLowerInvariant();
        if (wanted == Cpu)
        {
            return Cpu;
        }

        var available = OrtEnv.Instance().GetAvailableProviders();
        var ortName = wanted == Cuda ? "CUDAExecutionProvider" : "TensorrtExecutionProvider";
        if (!available.Contains(ortName))
        {
            if (logger is not null) LogFallback(logger, wanted, string.Join(", ", available));
            else Console.Error.WriteLine($"warning: execution provider '{wanted}' is not in this ONNX Runtime build (it has: {string.Join(", ", available)}); running on CPU");
            return Cpu;
        }

        try
        {
            if (wanted == TensorRt)
            {
                options.AppendExecutionProvider_Tensorrt(settings.DeviceId);
            }

            // CUDA after TensorRT: nodes TensorRT cannot take go to CUDA, not to the CPU.
            options.AppendExecutionProvider_CUDA(settings.DeviceId);
            return wanted;
        }
        catch (OnnxRuntimeException e)
        {
            if (logger is not null) LogFallback(logger, wanted, e.Message);
            else Console.Error.WriteLine($"warning: execution provider '{wanted}' failed to start ({e.Message}); running on CPU");
            return Cpu;
        }
    }

    [LoggerMessage(EventId = 1100, Level = LogLevel.Warning, Message = "Execution provider '{Provider}' is not usable ({Reason}); running on CPU")]
    private static partial void LogFallback(ILogger logger, string provider, string reason);
}
