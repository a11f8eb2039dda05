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
        PredictionJson.Write(_json, p, _model);
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
