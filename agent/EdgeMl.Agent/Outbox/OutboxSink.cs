using EdgeMl.Agent.Pipeline;
using EdgeMl.Protocol.Wire;

namespace EdgeMl.Agent.Outbox;

/// <summary>Stores every prediction as a telemetry record in the outbox before anything else sees it.</summary>
public sealed class OutboxSink(DeviceOutbox outbox, string modelName, string modelVersion) : IPredictionSink, IDisposable
{
    private readonly PredictionSerializer _serializer = new(modelName, modelVersion);

    public string Name => "outbox";

    public void OnPrediction(Prediction prediction) =>
        outbox.Append(RecordClass.Telemetry, _serializer.Serialize(prediction).ToArray());

    public void Dispose() => _serializer.Dispose();
}
