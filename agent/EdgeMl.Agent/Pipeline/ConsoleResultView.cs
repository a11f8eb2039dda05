using System.Globalization;
using System.Text;

namespace EdgeMl.Agent.Pipeline;

/// <summary>
/// A prediction per line for people watching a terminal (<c>run --format text</c>): time, label, a
/// probability bar and the inference latency. The JSON result log is for programs.
/// </summary>
public sealed class ConsoleResultView(TextWriter output) : IPredictionSink
{
    private readonly StringBuilder _line = new(160);
    private string? _lastLabel;

    public string Name => "console";

    public void OnPrediction(Prediction p)
    {
        _line.Clear();
        var label = p.Label ?? (p.IsAnomaly ? "ANOMALY" : "score");
        var bar = (int)Math.Round(Math.Clamp(p.Score, 0, 1) * 20);
        _line.Append(CultureInfo.InvariantCulture, $"#{p.Sequence,-5} t={p.WindowEndSeconds,7:0.00}s  {label,-14} {p.Score,5:0.00} ");
        _line.Append('█', bar).Append('·', 20 - bar);
        _line.Append(CultureInfo.InvariantCulture, $"  {p.LatencyMs,6:0.000} ms");
        if (_lastLabel is not null && label != _lastLabel)
        {
            _line.Append(CultureInfo.InvariantCulture, $"   ← changed from {_lastLabel}");
        }

        _lastLabel = label;
        output.WriteLine(_line);
        output.Flush();
    }
}
