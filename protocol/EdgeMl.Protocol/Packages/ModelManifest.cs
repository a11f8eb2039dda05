using System.Text.Json.Serialization;

namespace EdgeMl.Protocol.Packages;

/// <summary>
/// <c>manifest.json</c> of an <c>.edgepkg</c>: what the model expects, what it produces and how the
/// agent feeds it. The agent checks this against the model's real inputs and outputs before use.
/// </summary>
public sealed class ModelManifest
{
    public const int CurrentSchemaVersion = 1;

    public int SchemaVersion { get; set; } = CurrentSchemaVersion;
    public string Name { get; set; } = "";
    public string Version { get; set; } = "";
    public string? Description { get; set; }
    public ModelFileInfo Model { get; set; } = new();
    public List<InputSpec> Inputs { get; set; } = [];
    public List<OutputSpec> Outputs { get; set; } = [];
    public List<StateSpec> State { get; set; } = [];
    /// <summary>Model inputs fed the same value on every call (a sample rate, a flag), of any element type.</summary>
    public List<ConstantSpec> Constants { get; set; } = [];
    public ExecutionHints? Execution { get; set; }
    public QuantizationInfo? Quantization { get; set; }
    public DriftBaseline? Baseline { get; set; }
}

public sealed class ModelFileInfo
{
    public string File { get; set; } = ModelPackage.ModelEntryName;
    public string Sha256 { get; set; } = "";
    public long SizeBytes { get; set; }
}

/// <summary>A model input fed from sensor samples: which channels, how they are windowed and normalized.</summary>
public sealed class InputSpec
{
    public string Name { get; set; } = "";
    /// <summary>Element type as ONNX names it: <c>float32</c> is the only one the sensor path produces.</summary>
    public string Type { get; set; } = "float32";
    public List<long> Shape { get; set; } = [];
    public InputSource? Source { get; set; }
    public Normalization? Normalization { get; set; }
}

public sealed class InputSource
{
    /// <summary>Sensor channel names, in the order the model expects them.</summary>
    public List<string> Channels { get; set; } = [];
    /// <summary>Samples per window.</summary>
    public int Window { get; set; }
    /// <summary>Samples between the starts of two consecutive windows.</summary>
    public int Hop { get; set; }
    public double SampleRateHz { get; set; }
    /// <summary><c>channels_first</c> ([C, T]) or <c>channels_last</c> ([T, C]) after the batch dimension.</summary>
    public string Layout { get; set; } = InputLayouts.ChannelsFirst;
}

public static class InputLayouts
{
    public const string ChannelsFirst = "channels_first";
    public const string ChannelsLast = "channels_last";
}

/// <summary>Per-channel affine normalization: <c>(x - mean) / std</c>.</summary>
public sealed class Normalization
{
    public List<float> Mean { get; set; } = [];
    public List<float> Std { get; set; } = [];
}

public sealed class OutputSpec
{
    public string Name { get; set; } = "";
    public string Type { get; set; } = "float32";
    public List<long> Shape { get; set; } = [];
    /// <summary><c>classification</c>, <c>regression</c> or <c>anomaly</c>.</summary>
    public string Kind { get; set; } = OutputKinds.Classification;
    public List<string>? Labels { get; set; }
    /// <summary>For classification: whether the output holds logits that need a softmax.</summary>
    public bool Softmax { get; set; }
    /// <summary>For anomaly scores: the score above which a window is anomalous.</summary>
    public float? Threshold { get; set; }
}

public static class OutputKinds
{
    public const string Classification = "classification";
    public const string Regression = "regression";
    public const string Anomaly = "anomaly";
}

/// <summary>A recurrent state tensor: the output <see cref="Output"/> of one call is fed to input <see cref="Input"/> of the next.</summary>
public sealed class StateSpec
{
    public string Input { get; set; } = "";
    public string Output { get; set; } = "";
    /// <summary>Element type of both tensors, one of <see cref="ElementTypes.All"/> (<c>float32</c> when absent).</summary>
    public string Type { get; set; } = ElementTypes.Float32;
    public List<long> Shape { get; set; } = [];
    /// <summary>Initial value; empty means zeros, one value means that value everywhere.</summary>
    public List<double> Initial { get; set; } = [];
}

/// <summary>
/// A model input that is not fed from sensors but holds the same value on every call, e.g. silero VAD's sample rate
/// <c>{"name": "sr", "type": "int64", "shape": [], "values": [16000]}</c>.
/// </summary>
public sealed class ConstantSpec
{
    public string Name { get; set; } = "";
    /// <summary>Element type, one of <see cref="ElementTypes.All"/>.</summary>
    public string Type { get; set; } = ElementTypes.Float32;
    /// <summary>Fixed dimensions; empty for a scalar.</summary>
    public List<long> Shape { get; set; } = [];
    /// <summary>One value (every element) or one per element, in row-major order; integers and bools (0/1) as JSON numbers.</summary>
    public List<double> Values { get; set; } = [];
}

public sealed class ExecutionHints
{
    public string? PreferredProvider { get; set; }
    public int? IntraOpThreads { get; set; }
}

public sealed class QuantizationInfo
{
    /// <summary><c>qdq</c> or <c>qoperator</c>.</summary>
    public string Format { get; set; } = "qdq";
    public string Weights { get; set; } = "int8";
    public string Activations { get; set; } = "uint8";
    public bool PerChannel { get; set; }
    public string? Calibration { get; set; }
    public string? Tool { get; set; }
    public string? ReferenceModelSha256 { get; set; }
}

/// <summary>Reference statistics of every input feature and output, for drift detection on the device.</summary>
public sealed class DriftBaseline
{
    public long Samples { get; set; }
    /// <summary>What the reference data was (e.g. "healthy fleet: 16 machines …").</summary>
    public string? Reference { get; set; }
    /// <summary>This model's drift thresholds; null: the defaults (PSI 0.1/0.25, JS and normed Wasserstein 0.1, KS α 0.05).</summary>
    public Drift.DriftThresholds? Thresholds { get; set; }
    public List<FeatureBaseline> Features { get; set; } = [];
    public List<FeatureBaseline> Outputs { get; set; } = [];
}

public sealed class FeatureBaseline
{
    public string Name { get; set; } = "";
    public long Count { get; set; }
    public double Mean { get; set; }
    public double Variance { get; set; }
    public double Min { get; set; }
    public double Max { get; set; }
    /// <summary>Fixed bin edges; counts has edges+1 entries (an underflow and an overflow bin around the inner bins).</summary>
    public List<double> Edges { get; set; } = [];
    public List<long> Counts { get; set; } = [];
    /// <summary>Quantiles at the probabilities in <see cref="QuantileProbabilities"/>.</summary>
    public List<double> QuantileProbabilities { get; set; } = [];
    public List<double> Quantiles { get; set; } = [];
    /// <summary>For categorical outputs: exact counts per label.</summary>
    public Dictionary<string, long>? Categories { get; set; }
}
