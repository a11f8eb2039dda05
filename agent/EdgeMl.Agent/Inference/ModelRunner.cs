using System.Runtime.InteropServices;
using EdgeMl.Protocol.Packages;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeMl.Agent.Inference;

/// <summary>
/// One loaded model. Every input, output, state and constant tensor is an <see cref="OrtValue"/> over a managed
/// buffer allocated once and bound once to an <see cref="OrtIoBinding"/>, so <see cref="Run"/> writes the
/// inputs in place, runs, and reads the outputs in place: no allocation per call. State outputs are copied
/// back into the state inputs after each run. Sensor inputs and outputs are float32; state and constant tensors
/// have the element type the manifest gives (<see cref="ElementTypes"/>) and live in pinned byte buffers.
/// </summary>
public sealed class ModelRunner : IDisposable
{
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions;
    private readonly OrtIoBinding _binding;
    private readonly List<OrtValue> _values = [];
    private readonly float[][] _inputs;
    private readonly float[][] _outputs;
    private readonly byte[][] _stateIn;
    private readonly byte[][] _stateOut;

    private ModelRunner(ModelPackage package, InferenceSession session, string provider)
    {
        Package = package;
        _session = session;
        Provider = provider;
        var m = package.Manifest;
        try
        {
            _runOptions = new RunOptions();
            _binding = session.CreateIoBinding();
            _inputs = m.Inputs.Select(i => Bind(i.Name, i.Shape, input: true)).ToArray();
            _stateIn = m.State.Select(s => BindBytes(s.Input, s.Type, s.Shape, input: true)).ToArray();
            _outputs = m.Outputs.Select(o => Bind(o.Name, o.Shape, input: false)).ToArray();
            _stateOut = m.State.Select(s => BindBytes(s.Output, s.Type, s.Shape, input: false)).ToArray();
            foreach (var c in m.Constants)
            {
                // Bound once with its value: nothing is written per call.
                var buffer = BindBytes(c.Name, c.Type, c.Shape, input: true);
                ElementTypes.Encode(c.Type, c.Values, ManifestValidator.Elements(c.Shape), buffer);
            }

            ResetState();
        }
        catch
        {
            DisposeNative();
            throw;
        }
    }

    public ModelPackage Package { get; }
    public ModelManifest Manifest => Package.Manifest;

    /// <summary>The execution provider the session really uses (after any fallback).</summary>
    public string Provider { get; }

    /// <summary>Loads a package: creates the session, checks the manifest against the model, binds buffers, warms up.</summary>
    public static ModelRunner Load(ModelPackage package, InferenceSettings settings, ILogger? logger = null)
    {
        OnnxRuntimeLibrary.Use(settings.OnnxRuntimeLibrary);
        using var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            IntraOpNumThreads = settings.Threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        if (settings.Threads == 1)
        {
            // One intra-op thread: run on the caller's thread, no spinning pool threads on a small device.
            options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        }

        var provider = ExecutionProviders.Apply(options, settings, logger);

        InferenceSession session;
        try
        {
            session = new InferenceSession(package.ModelBytes, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelPackageException($"model package '{package.Source}': ONNX Runtime cannot load {ModelPackage.ModelEntryName}: {e.Message}", e);
        }

        try
        {
            var errors = ManifestModelCheck.Compare(package.Manifest, session.InputMetadata, session.OutputMetadata);
            if (errors.Count > 0)
            {
                throw new ModelPackageException(
                    $"model package '{package.Source}': manifest does not match the model:{Environment.NewLine}  - {string.Join($"{Environment.NewLine}  - ", errors)}");
            }

            var runner = new ModelRunner(package, session, provider);
            for (var i = 0; i < settings.WarmupRuns; i++)
            {
                runner.Run();
            }

            runner.ResetState();
            return runner;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    public int InputCount => _inputs.Length;
    public int OutputCount => _outputs.Length;

    /// <summary>The buffer behind input <paramref name="index"/> (manifest order); write the tensor here before <see cref="Run"/>.</summary>
    public Span<float> Input(int index) => _inputs[index];

    /// <summary>Output <paramref name="index"/> (manifest order) of the last <see cref="Run"/>.</summary>
    public ReadOnlySpan<float> Output(int index) => _outputs[index];

    /// <summary>The float32 state that the next <see cref="Run"/> will be fed (state <paramref name="index"/>, manifest order).</summary>
    /// <exception cref="InvalidOperationException">That state tensor is not float32 (read it with <see cref="StateBytes"/>).</exception>
    public ReadOnlySpan<float> State(int index) =>
        Manifest.State[index].Type == ElementTypes.Float32
            ? MemoryMarshal.Cast<byte, float>(_stateIn[index])
            : throw new InvalidOperationException($"state[{index}] '{Manifest.State[index].Input}' is {Manifest.State[index].Type}, not float32");

    /// <summary>The state that the next <see cref="Run"/> will be fed, as the tensor's little-endian bytes (any element type).</summary>
    public ReadOnlySpan<byte> StateBytes(int index) => _stateIn[index];

    public void Run()
    {
        _session.RunWithBinding(_runOptions, _binding);
        for (var i = 0; i < _stateIn.Length; i++)
        {
            _stateOut[i].AsSpan().CopyTo(_stateIn[i]);
        }
    }

    /// <summary>Puts every state tensor back to its initial value from the manifest.</summary>
    public void ResetState()
    {
        for (var i = 0; i < _stateIn.Length; i++)
        {
            var s = Manifest.State[i];
            ElementTypes.Encode(s.Type, s.Initial, ManifestValidator.Elements(s.Shape), _stateIn[i]);
        }
    }

    /// <summary>A bare <see cref="InferenceSession"/> over the same model bytes, for benchmarks that compare against it.</summary>
    internal InferenceSession Session => _session;

    private float[] Bind(string name, List<long> declared, bool input)
    {
        var shape = declared.Select(d => d > 0 ? d : 1).ToArray();
        var buffer = new float[ManifestValidator.Elements(shape)];
        var value = OrtValue.CreateTensorValueFromMemory(buffer, shape);
        _values.Add(value);
        if (input) _binding.BindInput(name, value);
        else _binding.BindOutput(name, value);
        return buffer;
    }

    /// <summary>A tensor of any element type over a pinned managed buffer (pinned so its address can be handed to ONNX Runtime once).</summary>
    private byte[] BindBytes(string name, string type, List<long> declared, bool input)
    {
        var shape = declared.Select(d => d > 0 ? d : 1).ToArray();
        var buffer = GC.AllocateArray<byte>((int)(ManifestValidator.Elements(shape) * ElementTypes.Size(type)), pinned: true);
        var value = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, OrtType(type), shape, Marshal.UnsafeAddrOfPinnedArrayElement(buffer, 0), buffer.Length);
        _values.Add(value);
        if (input) _binding.BindInput(name, value);
        else _binding.BindOutput(name, value);
        return buffer;
    }

    /// <summary>ONNX Runtime's element type for a manifest type name (<see cref="ElementTypes.All"/>).</summary>
    internal static TensorElementType OrtType(string type) => type switch
    {
        "float32" => TensorElementType.Float,
        "float64" => TensorElementType.Double,
        "float16" => TensorElementType.Float16,
        "int64" => TensorElementType.Int64,
        "int32" => TensorElementType.Int32,
        "int16" => TensorElementType.Int16,
        "int8" => TensorElementType.Int8,
        "uint8" => TensorElementType.UInt8,
        "bool" => TensorElementType.Bool,
        _ => throw new ModelPackageException($"element type '{type}' is not supported ({string.Join(", ", ElementTypes.All)})"),
    };

    private void DisposeNative()
    {
        _binding?.Dispose();
        foreach (var v in _values) v.Dispose();
        _values.Clear();
        _runOptions?.Dispose();
    }

    public void Dispose()
    {
        DisposeNative();
        _session.Dispose();
    }
}
