namespace EdgeMl.Agent.Inference;

/// <summary>How the agent runs a model; bound from <c>Agent:Inference</c>.</summary>
public sealed class InferenceSettings
{
    /// <summary><c>cpu</c> (default), <c>cuda</c> or <c>tensorrt</c>. Unavailable providers fall back to CPU with a warning.</summary>
    public string Provider { get; set; } = "cpu";
    public int DeviceId { get; set; }
    /// <summary>Intra-op threads; 0 lets ONNX Runtime pick (one per core).</summary>
    public int Threads { get; set; } = 1;
    /// <summary>Runs made on zeros at load, so the first real window is not slow.</summary>
    public int WarmupRuns { get; set; } = 2;
    /// <summary>
    /// A <c>libonnxruntime.so</c> to load instead of the one shipped next to the agent — for example a
    /// CUDA/TensorRT build on a Jetson. Empty: the bundled CPU library.
    /// </summary>
    public string? OnnxRuntimeLibrary { get; set; }
}
