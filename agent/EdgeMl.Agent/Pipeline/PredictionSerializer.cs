using System.Buffers;
using System.Text.Json;

namespace EdgeMl.Agent.Pipeline;

/// <summary>Turns predictions into JSON (<see cref="PredictionJson"/>) in one reused buffer and writer.</summary>
public sealed class PredictionSerializer(string modelName, string modelVersion) : IDisposable
{
    private readonly string _model = $"{modelName}@{modelVersion}";
    private readonly ArrayBufferWriter<byte> _buffer = new(1024);
    private Utf8JsonWriter? _json;

    /// <summary>The prediction as UTF-8 JSON; valid until the next call.</summary>
    public ReadOnlySpan<byte> Serialize(Prediction p)
    {
        _buffer.ResetWrittenCount();
        if (_json is null) _json = new Utf8JsonWriter(_buffer);
        else _json.Reset(_buffer);
        PredictionJson.Write(_json, p, _model);
        _json.Flush();
        return _buffer.WrittenSpan;
    }

    public void Dispose() => _json?.Dispose();
}
