namespace EdgeMl.Agent.Pipeline;

/// <summary>
/// Writes one JSON line per prediction to a stream (stdout for <c>run --model</c>, a file for the
/// service). Uses one reused buffer and writer: nothing allocated per line.
/// </summary>
public sealed class ResultLog(Stream stream, bool ownsStream, string modelName, string modelVersion) : IPredictionSink, IDisposable
{
    private readonly PredictionSerializer _serializer = new(modelName, modelVersion);

    public void OnPrediction(Prediction p)
    {
        stream.Write(_serializer.Serialize(p));
        stream.WriteByte((byte)'\n');
        stream.Flush();
    }

    public void Dispose()
    {
        _serializer.Dispose();
        if (ownsStream) stream.Dispose();
    }
}
