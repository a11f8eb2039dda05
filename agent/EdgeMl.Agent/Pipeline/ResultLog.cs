using System.Buffers;
using System.Text.Json;

namespace EdgeMl.Agent.Pipeline;

/// <summary>
/// Writes one JSON line per prediction to a stream (stdout for <c>run --model</c>, a file for the
/// service). Uses one reused buffer and writer: nothing allocated per line.
/// </summary>
public sealed class ResultLog : IPredictionSink, IDisposable
{
    private readonly Stream _stream;
    private readonly bool _ownsStream;
    private readonly ArrayBufferWriter<byte> _buffer = new(1024);
    private readonly Utf8JsonWriter _json;
    private readonly string _model;

    public ResultLog(Stream stream, bool ownsStream, string modelName, string modelVersion)
    {
        _stream = stream;
        _ownsStream = ownsStream;
        _json = new Utf8JsonWriter(_buffer);
        _model = $"{modelName}@{modelVersion}";
    }

    public void OnPrediction(Prediction p)
    {
        _buffer.ResetWrittenCount();
        _json.Reset(_buffer);
        _json.WriteStartObject();
        _json.WriteNumber("seq"u8, p.Sequence);
        _json.WriteNumber("t"u8, Math.Round(p.WindowEndSeconds, 3));
        _json.WriteString("model"u8, _model);
        if (p.Label is { } label)
        {
            _json.WriteString("label"u8, label);
        }

        _json.WriteNumber("score"u8, Math.Round(p.Score, 5));
        if (p.Primary.Kind == Protocol.Packages.OutputKinds.Anomaly)
        {
            _json.WriteBoolean("anomaly"u8, p.IsAnomaly);
        }

        if (p.Primary.Labels is { } labels)
        {
            _json.WriteStartObject("probs"u8);
            var probs = p.Values[0];
            for (var i = 0; i < labels.Count && i < probs.Length; i++)
            {
                _json.WriteNumber(labels[i], Math.Round(probs[i], 5));
            }

            _json.WriteEndObject();
        }
        else
        {
            _json.WriteStartArray("values"u8);
            foreach (var v in p.Values[0]) _json.WriteNumberValue(Math.Round(v, 6));
            _json.WriteEndArray();
        }

        _json.WriteNumber("latency_ms"u8, Math.Round(p.LatencyMs, 3));
        _json.WriteEndObject();
        _json.Flush();
        _stream.Write(_buffer.WrittenSpan);
        _stream.WriteByte((byte)'\n');
        _stream.Flush();
    }

    public void Dispose()
    {
        _json.Dispose();
        if (_ownsStream) _stream.Dispose();
    }
}
