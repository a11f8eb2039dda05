using System.Diagnostics;
using EdgeMl.Agent.Inference;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Protocol.Packages;

using EdgeMl.CommandLine;

namespace EdgeMl.Agent.Cli;

/// <summary>
/// <c>check-model PKG</c>: opens the package (zip, manifest, SHA-256), loads the model, checks the manifest
/// against it, and runs one smoke inference on a zero window. Prints what it found; exit 0, or 1 with the reason.
/// </summary>
public static class CheckModelCommand
{
    public static int Run(ParsedArgs args)
    {
        var path = args.Positional.Count == 1 ? args.Positional[0] : throw new UsageException("check-model needs one package path: edgeml-agent check-model PKG.edgepkg");
        var settings = new InferenceSettings { Provider = args.Get("provider") ?? "cpu", WarmupRuns = 0, OnnxRuntimeLibrary = args.Get("onnxruntime") };
        var trust = args.Get("trust");

        var package = ModelPackage.Open(path);
        var trusted = Inference.PackageTrust.Enforce(package, trust is null ? [] : trust.Split(','), "--trust");
        var m = package.Manifest;
        var start = Stopwatch.GetTimestamp();
        using var runner = ModelRunner.Load(package, settings);
        var loadMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;

        var predictor = new Predictor(runner);
        var windows = m.Inputs.Select(i => new float[i.Source!.Window * i.Source.Channels.Count]).ToArray();
        for (var i = 0; i < windows.Length; i++)
        {
            // A window at the normalization means: the model sees zeros.
            var mean = m.Inputs[i].Normalization?.Mean;
            var c = m.Inputs[i].Source!.Channels.Count;
            if (mean is not null) for (var k = 0; k < windows[i].Length; k++) windows[i][k] = mean[k % c];
        }

        var prediction = new Prediction(m);
        predictor.Predict(windows, prediction);
        foreach (var values in prediction.Values)
        {
            if (values.Any(v => !float.IsFinite(v)))
            {
                throw new ModelPackageException($"model package '{path}': smoke inference produced a non-finite output (NaN or infinity)");
            }
        }

        Console.WriteLine($"ok: {m.Name}@{m.Version} ({path})");
        Console.WriteLine($"  model      {package.ModelBytes.Length:N0} bytes, sha256 {m.Model.Sha256[..16]}…, {(m.Quantization is { } q ? $"quantized {q.Format} (weights {q.Weights}, activations {q.Activations})" : "float32")}");
        foreach (var i in m.Inputs)
            Console.WriteLine($"  input      {i.Name} [{string.Join(", ", i.Shape)}] ← {string.Join(",", i.Source!.Channels)} window {i.Source.Window} hop {i.Source.Hop} @ {i.Source.SampleRateHz} Hz");
        foreach (var o in m.Outputs)
            Console.WriteLine($"  output     {o.Name} [{string.Join(", ", o.Shape)}] {o.Kind}{(o.Labels is null ? "" : $": {string.Join(", ", o.Labels)}")}");
        foreach (var s in m.State)
            Console.WriteLine($"  state      {s.Output} → {s.Input} {s.Type}[{string.Join(", ", s.Shape)}]");
        foreach (var c in m.Constants)
            Console.WriteLine($"  constant   {c.Name} {c.Type}[{string.Join(", ", c.Shape)}] = {(c.Values.Count <= 4 ? string.Join(", ", c.Values.Select(v => v.ToString(System.Globalization.CultureInfo.InvariantCulture))) : $"{c.Values.Count} values")}");
        Console.WriteLine($"  provider   {runner.Provider}");
        Console.WriteLine($"  runtime    ONNX Runtime {Microsoft.ML.OnnxRuntime.OrtEnv.Instance().GetVersionString()} from {OnnxRuntimeLibrary.MappedFile() ?? OnnxRuntimeLibrary.LoadedFrom ?? "the bundled library"}");
        Console.WriteLine($"  load       {loadMs:0.0} ms; smoke inference {prediction.LatencyMs:0.000} ms → {(prediction.Label is null ? $"score {prediction.Score:0.####}" : $"{prediction.Label} {prediction.Score:0.###}")}");
        Console.WriteLine($"  signature  {(trusted is not null ? trusted.Message : package.Signature is null ? "none" : "present, not checked (give --trust KEY.pub)")}");
        return 0;
    }
}
