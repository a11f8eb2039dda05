using System.Text.Json;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.Agent.Pipeline;

/// <summary>A prediction as one JSON object: the result log's line and the telemetry record's payload.</summary>
public static class PredictionJson
{
    public static void Write(Utf8JsonWriter json, Prediction p, string model)
    {
        json.WriteStartObject();
        json.WriteNumber("seq"u8, p.Sequence);
        json.WriteNumber("t"u8, Math.Round(p.WindowEndSeconds, 3));
        json.WriteString("model"u8, model);
        if (p.Label is { } label)
        {
            json.WriteString("label"u8, label);
        }

        json.WriteNumber("score"u8, Math.Round(p.Score, 5));
        if (p.Primary.Kind == OutputKinds.Anomaly)
        {
            json.WriteBoolean("anomaly"u8, p.IsAnomaly);
        }

        if (p.Primary.Labels is { } labels)
        {
            json.WriteStartObject("probs"u8);
            var probs = p.Values[0];
            for (var i = 0; i < labels.Count && i < probs.Length; i++)
            {
                json.WriteNumber(labels[i], Math.Round(probs[i], 5));
            }

            json.WriteEndObject();
        }
        else
        {
            json.WriteStartArray("values"u8);
            foreach (var v in p.Values[0]) json.WriteNumberValue(Math.Round(v, 6));
            json.WriteEndArray();
        }

        json.WriteNumber("latency_ms"u8, Math.Round(p.LatencyMs, 3));
        json.WriteEndObject();
    }
}
