using EdgeMl.Agent.Platform;

namespace EdgeMl.Agent.Pipeline;

/// <summary>
/// Writes one JSON line per prediction to a stream (stdout for <c>run --model</c>, a file for the
/// service). Uses one reused buffer and writer: nothing allocated per line. Each line goes out in one write, so
/// give it an unbuffered stream. When the disk is full the line is dropped and counted (in
/// <paramref name="health"/> as the <c>result-log</c> sink's disk-full drops), a partial line is cut off again, and
/// writing resumes by itself with the first line that fits; predictions go on meanwhile.
/// </summary>
public sealed class ResultLog(Stream stream, bool ownsStream, string modelName, string modelVersion, AgentHealth? health = null) : IPredictionSink, IDisposable
{
    private readonly PredictionSerializer _serializer = new(modelName, modelVersion);
    private byte[] _line = new byte[1024];
    private bool _full;

    public string Name => "result-log";

    /// <summary>Lines dropped because the file system was full.</summary>
    public long DroppedDiskFull { get; private set; }

    public void OnPrediction(Prediction p)
    {
        var json = _serializer.Serialize(p);
        if (_line.Length < json.Length + 1) _line = new byte[json.Length * 2];
        json.CopyTo(_line);
        _line[json.Length] = (byte)'\n';
        var start = stream.CanSeek ? stream.Position : -1;
        try
        {
            stream.Write(_line, 0, json.Length + 1);
            stream.Flush();
            if (_full)
            {
                _full = false;
                health?.SinkDiskFull(Name, null);
            }
        }
        catch (IOException e) when (DiskSpace.IsFull(e))
        {
            DroppedDiskFull++;
            _full = true;
            health?.SinkDiskFull(Name, e.Message);
            if (start >= 0)
            {
                try
                {
                    stream.SetLength(start); // no half line for a reader to trip on
                }
                catch (IOException)
                {
                }
            }
        }
    }

    public void Dispose()
    {
        _serializer.Dispose();
        if (ownsStream) stream.Dispose();
    }
}
