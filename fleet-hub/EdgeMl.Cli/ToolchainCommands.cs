using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeMl.ModelTools;
using EdgeMl.Protocol.Packages;

using EdgeMl.CommandLine;

namespace EdgeMl.Cli;

/// <summary>The model toolchain, offline: <c>edgeml model inspect|quantize|evaluate|package</c>.</summary>
public static class ToolchainCommands
{
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static void Inspect(ParsedArgs args, Output output)
    {
        var file = args.Positional.Count == 1 ? args.Positional[0] : throw new UsageException("model inspect FILE (.onnx or .edgepkg)");
        var r = Run(() => Inspector.Inspect(file));
        if (output.Json(JsonSerializer.SerializeToNode(r, Web)!)) return;
        output.Pairs([
            ("file", $"{r.File} ({Size(r.SizeBytes)}{(r.ModelBytes != r.SizeBytes ? $", model {Size(r.ModelBytes)}" : "")})"),
            ("format", $"ONNX IR {r.IrVersion}, opset {r.Opset}{(r.Opsets.Count > 1 ? $" ({string.Join(", ", r.Opsets.Select(o => $"{o.Key} {o.Value}"))})" : "")}"),
            ("producer", r.Producer.Length > 0 ? r.Producer : "-"),
            ("parameters", r.Parameters.ToString("N0", CultureInfo.InvariantCulture)),
            ("quantization", r.Quantization),
            ("nodes", $"{r.Nodes}{(r.Subgraphs > 0 ? $" (with {r.Subgraphs} subgraph(s))" : "")}: {string.Join(", ", r.Operators.Select(o => $"{o.Key} {o.Value}"))}"),
            ("external data", r.ExternalData.Count == 0 ? "none" : string.Join(", ", r.ExternalData.Select(f => $"{f.Key} ({Size(f.Value)})"))),
        ]);
        output.Line("");
        output.Table(["", "NAME", "TYPE", "SHAPE"], r.Inputs.Select(i => new[] { "input", i.Name, i.Type, $"[{string.Join(", ", i.Shape)}]" })
            .Concat(r.Outputs.Select(o => new[] { "output", o.Name, o.Type, $"[{string.Join(", ", o.Shape)}]" })).Select(x => (string?[])x).ToList());
        if (r.Manifest is { } m)
        {
            output.Line("");
            output.Pairs([
                ("package", $"{m.Name}@{m.Version}{(m.Signed ? ", signed" : ", unsigned")}"),
                ("inputs", string.Join("; ", m.Inputs)),
                ("outputs", string.Join("; ", m.Outputs)),
                ("state", m.StateTensors.ToString(CultureInfo.InvariantCulture)),
                ("quantization", m.Quantization ?? "-"),
                ("baseline", m.Baseline ?? "none"),
            ]);
        }
    }

    public static void Quantize(ParsedArgs args, Output output, TextWriter stderr)
    {
        var input = args.Positional.Count == 1 ? args.Positional[0] : throw new UsageException("model quantize IN.onnx --calibration DATA --out OUT.onnx");
        var outPath = args.Get("out") ?? throw new UsageException("model quantize needs --out OUT.onnx");
        var options = new QuantizeOptions
        {
            Mode = args.Get("mode") ?? "static",
            Method = (args.Get("method") ?? "minmax") switch
            {
                "minmax" => CalibrationMethod.MinMax,
                "percentile" => CalibrationMethod.Percentile,
                "entropy" => CalibrationMethod.Entropy,
                var m => throw new UsageException($"--method {m}: minmax, percentile or entropy"),
            },
            ActivationType = args.Get("activation-type") ?? "uint8",
            PerChannel = !args.Has("per-tensor"),
            Exclude = args.All("exclude").SelectMany(e => e.Split(',', StringSplitOptions.RemoveEmptyEntries)).ToList(),
        };
        if (options.Mode is not ("static" or "dynamic")) throw new UsageException($"--mode {options.Mode}: static or dynamic");
        if (args.Get("percentile") is { } p) options.Percentile = double.Parse(p, CultureInfo.InvariantCulture);
        if (args.Get("limit") is { } l) options.Limit = int.Parse(l, CultureInfo.InvariantCulture);
        if (args.Get("max-accuracy-drop") is { } mad)
        {
            // An accuracy bound replaces the cosine bound unless both are given.
            options.MaxAccuracyDrop = double.Parse(mad, CultureInfo.InvariantCulture);
            options.MinCosine = 0;
        }

        options.Labels = args.Get("labels");
        if (args.Get("min-cosine") is { } mc) options.MinCosine = double.Parse(mc, CultureInfo.InvariantCulture);
        if (args.Get("max-float-layers") is { } mfl) options.MaxFloatLayers = int.Parse(mfl, CultureInfo.InvariantCulture);
        if (args.Get("threads") is { } th) options.Threads = int.Parse(th, CultureInfo.InvariantCulture);
        options.AllowSlower = args.Has("allow-slower");
        var calibration = args.Get("calibration");
        var manifest = args.Get("manifest") is { } mf ? Manifest(mf) : input.EndsWith(".edgepkg", StringComparison.OrdinalIgnoreCase) ? ModelPackage.Open(input).Manifest : null;
        var result = Run(() => Quantizer.Quantize(input, calibration, options, manifest, Progress(stderr, "calibrating"), outPath));
        var node = JsonSerializer.SerializeToNode(result, Web)!.AsObject();
        node.Remove("model");
        node["out"] = outPath;
        if (output.Json(node)) return;
        output.Line($"{outPath}: {result.Mode} int8, {Size(result.SizeIn)} → {Size(result.SizeOut)} ({(double)result.SizeOut / result.SizeIn:P0})");
        output.Line($"  {result.QuantizedNodes} nodes quantized, {result.Weights} weight tensors int8, {result.Activations} activations with Q/DQ{(result.WeightOnlyNodes > 0 ? $", {result.WeightOnlyNodes} recurrent (weight-only)" : "")}; opset {result.OpsetIn} → {result.OpsetOut}{(result.CalibrationSamples > 0 ? $"; {result.CalibrationSamples} calibration samples" : "")}");
        output.Line($"  quantized: {string.Join(", ", result.QuantizedOps.Select(o => $"{o.Key} {o.Value}"))}");
        if (result.Check is { } c)
        {
            output.Line($"  checked from the written file on {(calibration is null ? "made-up" : "calibration")} samples: cosine {string.Join(", ", c.Outputs.Select(o => $"{o.Name} {o.Cosine:0.####}"))}; " +
                (c.AccuracyDropPoints is { } d ? $"top-1 accuracy drop {d:0.##} points; " : "") +
                $"latency {c.ReferenceMs:0.###} ms → {c.CandidateMs:0.###} ms (ratio {c.LatencyRatio:0.00}, {options.Threads} thread(s))");
        }

        foreach (var (n, why) in result.KeptFloat) output.Line($"  kept in float: {n} ({why})");
        foreach (var n in result.Notes) output.Line($"  {n}");
        output.Line($"next: edgeml model evaluate --reference {input} --candidate {outPath} --data HELD_OUT_DATA");
    }

    public static void Evaluate(ParsedArgs args, Output output, TextWriter stderr)
    {
        var reference = args.Get("reference") ?? throw new UsageException("model evaluate needs --reference FP32 --candidate INT8 --data DATA");
        var candidate = args.Get("candidate") ?? throw new UsageException("model evaluate needs --candidate INT8");
        var data = args.Get("data") ?? throw new UsageException("model evaluate needs --data DATA (.npy, .npz, .csv or a folder of .csv)");
        var options = new EvaluateOptions { Labels = args.Get("labels"), Manifest = args.Get("manifest") is { } mf ? Manifest(mf) : null };
        if (args.Get("limit") is { } l) options.Limit = int.Parse(l, CultureInfo.InvariantCulture);
        if (args.Get("threads") is { } t) options.Threads = int.Parse(t, CultureInfo.InvariantCulture);
        if (args.Get("repeats") is { } rp) options.Repeats = int.Parse(rp, CultureInfo.InvariantCulture);
        var e = Run(() => Evaluator.Evaluate(reference, candidate, data, options, Progress(stderr, "evaluating")));
        if (output.Json(JsonSerializer.SerializeToNode(e, Web)!)) return;
        output.Pairs([
            ("samples", e.Samples.ToString(CultureInfo.InvariantCulture)),
            ("size", $"{Size(e.ReferenceBytes)} → {Size(e.CandidateBytes)}: ratio {e.SizeRatio:0.000}"),
            ("latency", $"median {e.ReferenceMedianMs:0.###} ms → {e.CandidateMedianMs:0.###} ms: ratio {e.LatencyRatio:0.00} (same process, interleaved, {options.Threads} thread(s))"),
        ]);
        if (e.ReferenceAccuracy is { } ra)
        {
            output.Line($"accuracy      {ra:P2} → {e.CandidateAccuracy:P2}: drop {e.MetricDropPoints:0.##} points");
        }

        output.Line("");
        output.Table(["OUTPUT", "TOP-1 AGREEMENT", "MAX |ERR|", "MEAN |ERR|", "COSINE"], e.Outputs.Select(o => new[]
        {
            o.Name, o.Top1Agreement is { } a ? a.ToString("P2", CultureInfo.InvariantCulture) : "-", o.MaxAbsError.ToString("0.####", CultureInfo.InvariantCulture),
            o.MeanAbsError.ToString("0.#####", CultureInfo.InvariantCulture), o.Cosine.ToString("0.#####", CultureInfo.InvariantCulture),
        }).Select(x => (string?[])x).ToList());
    }

    public static void Package(ParsedArgs args, Output output, TextWriter stderr)
    {
        var model = args.Get("model") ?? throw new UsageException("model package needs --model M.onnx --manifest TEMPLATE.json --out X.edgepkg [--reference DATA]");
        var manifest = args.Get("manifest") ?? throw new UsageException("model package needs --manifest TEMPLATE.json (or a .edgepkg whose manifest to start from)");
        var outPath = args.Get("out") ?? throw new UsageException("model package needs --out X.edgepkg");
        var reference = args.Get("reference");
        var name = args.Get("name");
        var version = args.Get("version");
        var r = Run(() =>
        {
            var result = Packager.Package(model, manifest, reference, outPath + ".tmp", progress: Progress(stderr, "baseline"));
            if (name is not null || version is not null)
            {
                var m = result.Manifest;
                m.Name = name ?? m.Name;
                m.Version = version ?? m.Version;
                ModelPackage.Write(outPath + ".tmp", m, ModelPackage.Open(outPath + ".tmp").ModelBytes);
            }

            File.Move(outPath + ".tmp", outPath, overwrite: true);
            return result;
        });
        var m = r.Manifest;
        var node = new JsonObject
        {
            ["out"] = outPath, ["name"] = m.Name, ["version"] = m.Version, ["modelSha256"] = m.Model.Sha256, ["modelBytes"] = m.Model.SizeBytes,
            ["windows"] = r.Windows, ["samples"] = r.Samples, ["features"] = m.Baseline?.Features.Count ?? 0, ["outputs"] = m.Baseline?.Outputs.Count ?? 0,
        };
        if (output.Json(node)) return;
        output.Line($"{outPath}: {m.Name}@{m.Version}, model {Size(m.Model.SizeBytes)} SHA-256 {m.Model.Sha256[..16]}…{(m.Quantization is { } q ? $", {q.Format} {q.Weights}/{q.Activations}" : "")}; manifest checked against the model");
        if (m.Baseline is { } b)
        {
            output.Line($"  drift baseline from {r.Windows} reference windows ({r.Samples} samples): {string.Join(", ", b.Features.Select(f => $"{f.Name} {f.Mean:0.###}±{Math.Sqrt(f.Variance):0.###}"))}");
            output.Line($"  outputs: {string.Join(", ", b.Outputs.Select(f => f.Categories is { } c ? $"{f.Name} {string.Join("/", c.Select(kv => $"{kv.Key} {kv.Value}"))}" : $"{f.Name} {f.Mean:0.###}"))}");
        }

        output.Line($"next: edgeml model sign {outPath} --key KEY.key");
    }

    private static ModelManifest Manifest(string path)
    {
        if (path.EndsWith(".edgepkg", StringComparison.OrdinalIgnoreCase)) return ModelPackage.Open(path).Manifest;
        if (!File.Exists(path)) throw new UsageException($"--manifest {path}: no such file");
        return ModelPackage.ParseManifest(InputFiles.ReadAll(path, "manifest"), path);
    }

    /// <summary>A progress line on stderr for long runs (a terminal sees it redrawn; a log gets a line every 10 %).</summary>
    private static Action<int, int> Progress(TextWriter stderr, string what)
    {
        var last = -1;
        return (done, total) =>
        {
            var pct = total == 0 ? 100 : done * 100 / total;
            if (pct / 10 == last / 10 && done != total) return;
            last = pct;
            stderr.Write($"\r{what}: {done}/{total} ({pct}%)");
            if (done == total) stderr.WriteLine();
        };
    }

    private static T Run<T>(Func<T> f)
    {
        try
        {
            return f();
        }
        catch (ModelToolException e)
        {
            throw new HubException(e.Message);
        }
        catch (ModelPackageException e)
        {
            throw new HubException(e.Message);
        }
    }

    private static string Size(long bytes) => bytes >= 1 << 20 ? $"{bytes / 1048576.0:0.0} MB" : bytes >= 1024 ? $"{bytes / 1024.0:0.0} KB" : $"{bytes} B";
}
