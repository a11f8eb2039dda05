using EdgeMl.Protocol.Packages;

namespace EdgeMl.Agent.Pipeline;

/// <summary>
/// The decoded result of one inference, in buffers reused from one prediction to the next. For a
/// classification output: the winning label and its probability, and all probabilities; for an anomaly
/// output: the score and whether it crosses the threshold; for regression: the raw values.
/// </summary>
public sealed class Prediction
{
    public Prediction(ModelManifest manifest)
    {
        Manifest = manifest;
        Values = manifest.Outputs.Select(o => new float[ManifestValidator.Elements(o.Shape)]).ToArray();
        Primary = manifest.Outputs[0];
    }

    public ModelManifest Manifest { get; }
    public OutputSpec Primary { get; }
    public long Sequence { get; set; }
    /// <summary>Seconds since the sensor started, at the window's last sample.</summary>
    public double WindowEndSeconds { get; set; }
    public double LatencyMs { get; set; }
    /// <summary>Per output (manifest order): probabilities for classification, raw values otherwise.</summary>
    public float[][] Values { get; }
    public int ClassIndex { get; set; } = -1;
    public string? Label => ClassIndex >= 0 ? Primary.Labels![ClassIndex] : null;
    /// <summary>Probability of the winning class, or the anomaly score, or the first regression value.</summary>
    public float Score { get; set; }
    public bool IsAnomaly { get; set; }

    /// <summary>Decodes the primary output from the model's output buffers.</summary>
    public void Decode(Inference.ModelRunner runner)
    {
        for (var i = 0; i < Values.Length; i++)
        {
            var src = runner.Output(i);
            var dst = Values[i].AsSpan();
            var spec = Manifest.Outputs[i];
            if (spec.Kind == OutputKinds.Classification && spec.Softmax) Softmax(src, dst);
            else src.CopyTo(dst);
        }

        var v = Values[0];
        switch (Primary.Kind)
        {
            case OutputKinds.Classification:
                var best = 0;
                for (var k = 1; k < v.Length; k++) if (v[k] > v[best]) best = k;
                ClassIndex = best;
                Score = v[best];
                break;
            case OutputKinds.Anomaly:
                Score = v[0];
                IsAnomaly = v[0] >= Primary.Threshold;
                break;
            default:
                Score = v[0];
                break;
        }
    }

    private static void Softmax(ReadOnlySpan<float> logits, Span<float> probs)
    {
        var max = float.NegativeInfinity;
        foreach (var x in logits) max = Math.Max(max, x);
        var sum = 0f;
        for (var i = 0; i < logits.Length; i++)
        {
            probs[i] = MathF.Exp(logits[i] - max);
            sum += probs[i];
        }

        for (var i = 0; i < probs.Length; i++) probs[i] /= sum;
    }
}
