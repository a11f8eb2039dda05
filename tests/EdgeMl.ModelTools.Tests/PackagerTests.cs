using System.Diagnostics;
using System.Text.Json;
using EdgeMl.ModelTools.Data;
using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;

namespace EdgeMl.ModelTools.Tests;

/// <summary><c>package</c> fills the drift baseline from reference data and checks the manifest; the CLI drives the whole toolchain.</summary>
public sealed class PackagerTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    [Fact]
    public void The_baseline_histograms_sum_to_the_reference_rows_and_the_model_hash_is_filled_in()
    {
        var output = Path.Combine(_dir.Path, "vib.edgepkg");
        var r = Packager.Package(TestPackages.VibrationFp32, TestPackages.VibrationFp32, TestPackages.VibrationTestData, output);
        var package = ModelPackage.Open(output);
        var b = package.Manifest.Baseline!;
        Assert.Equal(24 * 2048, b.Samples); // every CSV row once
        Assert.Equal(360, r.Windows); // 24 files × 15 windows (256, hop 128)
        Assert.Equal(["ax", "ay", "az"], b.Features.Select(f => f.Name));
        foreach (var f in b.Features)
        {
            Assert.Equal(24 * 2048, f.Counts.Sum());
            Assert.Equal(f.Edges.Count + 1, f.Counts.Count); // underflow and overflow bins around the inner ones
            Assert.Equal(0, f.Counts[0]); // the first edge is the minimum: nothing below it
            Assert.True(f.Edges.SequenceEqual(f.Edges.Order()));
            Assert.Equal(9, f.Quantiles.Count);
        }

        Assert.Equal(["p_normal", "p_imbalance", "p_bearing_fault", "label"], b.Outputs.Select(o => o.Name));
        foreach (var o in b.Outputs.Take(3)) Assert.Equal(360, o.Counts.Sum());
        var labels = b.Outputs[3].Categories!;
        Assert.Equal(360, labels.Values.Sum());
        Assert.InRange(labels["normal"], 100, 140); // a third of the held-out windows are normal (≈ 98.9 % accuracy)
        Assert.Equal(ModelPackage.Sha256Hex(package.ModelBytes), package.Manifest.Model.Sha256);

        // The packaged model is what the agent runs: the baseline's own mean of the az channel is gravity.
        Assert.InRange(b.Features[2].Mean, 9.5, 10.1);
    }

    [Fact]
    public void A_manifest_that_does_not_match_the_model_is_refused_with_every_difference()
    {
        var manifest = ModelPackage.Open(TestPackages.VibrationFp32).Manifest;
        manifest.Inputs[0].Name = "acc";
        manifest.Outputs[0].Shape = [1, 4];
        manifest.Outputs[0].Labels = ["a", "b", "c", "d"];
        var path = Path.Combine(_dir.Path, "wrong.json");
        File.WriteAllBytes(path, ModelPackage.SerializeManifest(manifest));
        var e = Assert.Throws<ModelToolException>(() => Packager.Package(TestPackages.VibrationFp32, path, null, Path.Combine(_dir.Path, "x.edgepkg")));
        Assert.Contains("inputs[0]: the model has no input named 'acc' (its inputs: 'accel')", e.Message, StringComparison.Ordinal);
        Assert.Contains("outputs[0]: model output 'logits' has shape float32[1, 3], the manifest declares [1, 4] (dimension 1 differs)", e.Message, StringComparison.Ordinal);
        Assert.Contains("model input 'accel' float32[1, 3, 256] is not declared in the manifest", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(_dir.Path, "x.edgepkg")));
    }

    private static (int Code, string Out, string Err) Edgeml(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "edgeml.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void The_cli_inspects_quantizes_evaluates_and_packages_the_bundled_model()
    {
        var fp32 = TestPackages.VibrationFp32;
        var int8 = Path.Combine(_dir.Path, "int8.onnx");
        var calibration = Path.Combine(TestPackages.RepositoryRoot, "models", "vibration", "calibration");

        var q = Edgeml("model", "quantize", fp32, "--calibration", calibration, "--out", int8, "--method", "percentile", "--allow-slower", "--json");
        Assert.True(q.Code == 0, q.Err);
        var result = JsonDocument.Parse(q.Out).RootElement;
        Assert.Equal(180, result.GetProperty("calibrationSamples").GetInt32()); // 12 recordings × 15 windows
        Assert.Contains("calibrating: 360/360 (100%)", q.Err, StringComparison.Ordinal); // progress: two passes (range, then histogram)

        var e = Edgeml("model", "evaluate", "--reference", fp32, "--candidate", int8, "--data", TestPackages.VibrationTestData, "--manifest", fp32, "--json");
        Assert.True(e.Code == 0, e.Err);
        var ev = JsonDocument.Parse(e.Out).RootElement;
        Assert.Equal(360, ev.GetProperty("samples").GetInt32());
        Assert.True(ev.GetProperty("outputs")[0].GetProperty("top1Agreement").GetDouble() >= 0.99);
        Assert.True(ev.GetProperty("metricDropPoints").GetDouble() <= 1); // labels from the file names (normal-30000.csv …)
        Assert.True(ev.GetProperty("sizeRatio").GetDouble() < 0.6);

        var pkg = Path.Combine(_dir.Path, "vib-int8.edgepkg");
        var p = Edgeml("model", "package", "--model", int8, "--manifest", fp32, "--reference", TestPackages.VibrationTestData, "--out", pkg, "--version", "1.1.0");
        Assert.True(p.Code == 0, p.Err);
        var m = ModelPackage.Open(pkg).Manifest;
        Assert.Equal("1.1.0", m.Version);
        Assert.Equal("qdq", m.Quantization!.Format);
        Assert.True(m.Quantization.PerChannel);
        Assert.StartsWith("percentile 99.999%, 180 samples of calibration", m.Quantization.Calibration, StringComparison.Ordinal);

        var i = Edgeml("model", "inspect", pkg);
        Assert.True(i.Code == 0, i.Err);
        Assert.Contains("QDQ:", i.Out, StringComparison.Ordinal);
        Assert.Contains("vibration-fault@1.1.0, unsigned", i.Out, StringComparison.Ordinal);
        Assert.Contains("accel", i.Out, StringComparison.Ordinal);

        // Dynamic mode on a conv model quantizes only its Gemm; a corrupt file is an error with exit 1.
        var dynamic = Edgeml("model", "quantize", fp32, "--mode", "dynamic", "--allow-slower", "--out", Path.Combine(_dir.Path, "dyn.onnx"));
        Assert.True(dynamic.Code == 0, dynamic.Err);
        Assert.Contains("1 nodes quantized", dynamic.Out, StringComparison.Ordinal);
        var corrupt = Path.Combine(_dir.Path, "corrupt.onnx");
        File.WriteAllBytes(corrupt, [1, 2, 3, 4, 5, 6, 7, 8]);
        var bad = Edgeml("model", "inspect", corrupt);
        Assert.Equal(1, bad.Code);
        Assert.Contains("is not an ONNX model", bad.Err, StringComparison.Ordinal);
    }

    public void Dispose() => _dir.Dispose();
}
