using EdgeMl.Protocol.Packages;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace EdgeMl.Agent.Inference;

/// <summary>
/// One loaded model. Every input, output and state tensor is an <see cref="OrtValue"/> over a managed
/// buffer allocated once and bound once to an <see cref="OrtIoBinding"/>, so <see cref="Run"/> writes the
/// inputs in place, runs, and reads the outputs in place: no allocation per call. State outputs are copied
/// back into the state inputs after each run.
/// </summary>
public sealed class ModelRunner : IDisposable
{
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions;
    private readonly OrtIoBinding _binding;
    private readonly List<OrtValue> _values = [];
    private readonly float[][] _inputs;
    private readonly float[][] _outputs;
    private readonly float[][] _stateIn;
    private readonly float[][] _stateOut;

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
            _stateIn = m.State.Select(s => Bind(s.Input, s.Shape, input: true)).ToArray();
            _outputs = m.Outputs.Select(o => Bind(o.Name, o.Shape, input: false)).ToArray();
            _stateOut = m.State.Select(s => Bind(s.Output, s.Shape, input: false)).ToArray();
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

    /// <summary>The state that the next <see cref="Run"/> will be fed.</summary>
    public ReadOnlySpan<float> State(int index) => _stateIn[index];

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
            var initial = Manifest.State[i].Initial;
            var buffer = _stateIn[i].AsSpan();
            if (initial.Count == 0) buffer.Clear();
            else if (initial.Count == 1) buffer.Fill(initial[0]);
            else for (var k = 0; k < buffer.Length; k++) buffer[k] = initial[k];
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
