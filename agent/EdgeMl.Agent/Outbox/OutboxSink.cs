using System.Buffers;
using System.Text.Json;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Protocol.Wire;

namespace EdgeMl.Agent.Outbox;

/// <summary>Stores every prediction as a telemetry record in the outbox before anything else sees it.</summary>
public sealed class OutboxSink : IPredictionSink, IDisposable
{
    private readonly DeviceOutbox _outbox;
    private readonly string _model;
    private readonly ArrayBufferWriter<byte> _buffer = new(512);
    private readonly Utf8JsonWriter _json;

    public OutboxSink(DeviceOutbox outbox, string modelName, string modelVersion)
    {
        _outbox = outbox;
        _model = $"{modelName}@{modelVersion}";
        _json = new Utf8JsonWriter(_buffer);
    }

    public void OnPrediction(Prediction prediction)
    {
        _buffer.ResetWrittenCount();
        _json.Reset(_buffer);
        PredictionJson.Write(_json, prediction, _model);
        _json.Flush();
        _outbox.Append(RecordClass.Telemetry, _buffer.WrittenSpan.ToArray());
    }

    public void Dispose() => _json.Dispose();
}
