using System.Buffers;
using System.Text.Json;
using EdgeMl.Agent.Actions;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Protocol.Wire;

namespace EdgeMl.Agent.Outbox;

/// <summary>
/// Stores alert records — a rule switching on or off, a sensor failing or recovering — in the outbox's most
/// important class: they leave first and are the last to be dropped when the outbox is full.
/// </summary>
public sealed class AlertRecorder(DeviceOutbox outbox, string modelName, string modelVersion)
{
    private readonly Lock _gate = new();
    private readonly ArrayBufferWriter<byte> _buffer = new(512);

    public void Rule(RuleSwitch s) => Write(w =>
    {
        w.WriteString("kind", "rule");
        w.WriteString("rule", s.Name);
        w.WriteString("state", s.On ? "on" : "off");
        if (s.Pin is { } pin) w.WriteNumber("pin", pin);
        if (s.Label is not null) w.WriteString("label", s.Label);
        w.WriteNumber("score", Math.Round(s.Score, 4));
        w.WriteNumber("sequence", s.Sequence);
        w.WriteString("at", s.At);
    });

    public void Sensor(SensorStateChange c) => Write(w =>
    {
        w.WriteString("kind", "sensor");
        w.WriteString("sensor", c.Sensor);
        w.WriteString("state", c.State);
        if (c.Error is not null) w.WriteString("error", c.Error);
        w.WriteString("at", c.At);
    });

    /// <summary>An online detector saw a sudden change in a model output.</summary>
    public void Drift(string detector, string output, string direction, long sequence, DateTimeOffset at) => Write(w =>
    {
        w.WriteString("kind", "drift");
        w.WriteString("detector", detector);
        w.WriteString("output", output);
        w.WriteString("direction", direction);
        w.WriteNumber("sequence", sequence);
        w.WriteString("at", at);
    });

    /// <summary>Something happened to the device's own storage (an unreadable outbox moved aside).</summary>
    public void Store(string message, DateTimeOffset at) => Write(w =>
    {
        w.WriteString("kind", "store");
        w.WriteString("message", message);
        w.WriteString("at", at);
    });

    private void Write(Action<Utf8JsonWriter> body)
    {
        lock (_gate)
        {
            _buffer.ResetWrittenCount();
            using (var w = new Utf8JsonWriter(_buffer))
            {
                w.WriteStartObject();
                body(w);
                w.WriteString("model", modelName);
                w.WriteString("version", modelVersion);
                w.WriteEndObject();
            }

            outbox.Append(RecordClass.Alert, _buffer.WrittenSpan.ToArray());
        }
    }
}
