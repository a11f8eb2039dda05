using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.FleetHub.Rollouts;

/// <summary>
/// A staged rollout of one model version to a set of devices, in waves. The whole state lives in this object and is
/// saved to the hub store after every change, so a hub restart resumes it where it was.
/// States: running, paused, halted (a gate failed: the wave was rolled back), aborted, completed.
/// Each wave goes through two stages: <c>shadow</c> (devices stage and shadow the model; gates are judged on the
/// figures) and <c>activating</c> (devices switch and watch it; a device-side rollback halts the rollout).
/// </summary>
public sealed class Rollout
{
    public string Id { get; set; } = "";
    public string Model { get; set; } = "";
    public string Version { get; set; } = "";
    public string Sha256 { get; set; } = "";
    public long SizeBytes { get; set; }
    public string Url { get; set; } = "";
    /// <summary>What was asked for: <c>group:NAME</c> or <c>devices:ID,…</c>.</summary>
    public string Target { get; set; } = "";
    /// <summary>Cumulative share of the targets after each wave, in percent (the last is 100).</summary>
    public List<double> Waves { get; set; } = [];
    public List<Gate> Gates { get; set; } = [];
    public int SoakSeconds { get; set; }
    public int WatchSeconds { get; set; } = 30;
    /// <summary>How long a device of the current wave may stay silent before it is counted as not updated (offline).</summary>
    public int OfflineTimeoutSeconds { get; set; } = 600;
    public string State { get; set; } = "running";
    public string? Reason { get; set; }
    public int Wave { get; set; }
    /// <summary>null (wave not started), <c>shadow</c> or <c>activating</c>.</summary>
    public string? Stage { get; set; }
    public DateTimeOffset? StageStarted { get; set; }
    public List<RolloutDevice> Devices { get; set; } = [];
    public List<WaveResult> Results { get; set; } = [];
    public string CreatedBy { get; set; } = "";
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? EndedAt { get; set; }

    public string Label => $"{Model}@{Version}";
    public bool Active => State is "running" or "paused";

    /// <summary>How many targets are in waves 0..<paramref name="wave"/> (at least one in the first wave).</summary>
    public static int CumulativeCount(IReadOnlyList<double> waves, int wave, int total) =>
        total == 0 ? 0 : Math.Clamp((int)Math.Ceiling(waves[wave] / 100.0 * total - 1e-9), wave == 0 ? 1 : 0, total);

    /// <summary>
    /// Orders the target devices deterministically (SHA-256 of model@version and device id: the same targets give the
    /// same waves, and a wave is a fair sample, not the alphabetically first devices) and assigns each its wave.
    /// </summary>
    public void AssignWaves(IEnumerable<(string Id, string? From, string? FromSha)> targets)
    {
        var ordered = targets.OrderBy(t => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes($"{Label}/{t.Id}"))), StringComparer.Ordinal).ToList();
        Devices = ordered.Select((t, i) =>
        {
            var wave = 0;
            while (i >= CumulativeCount(Waves, wave, ordered.Count)) wave++;
            return new RolloutDevice { Id = t.Id, From = t.From, FromSha = t.FromSha, Wave = wave };
        }).ToList();
    }

    public static List<double> ParseWaves(string text)
    {
        var waves = new List<double>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!double.TryParse(part.TrimEnd('%'), NumberStyles.Float, CultureInfo.InvariantCulture, out var pct) || !double.IsFinite(pct) || pct <= 0 || pct > 100)
            {
                throw new FormatException($"wave '{part}' is not a percentage in (0, 100]");
            }

            if (waves.Count > 0 && pct <= waves[^1]) throw new FormatException($"waves must grow: '{part}' after {waves[^1]}%");
            waves.Add(pct);
        }

        if (waves.Count == 0) waves.Add(100);
        if (waves[^1] < 100) waves.Add(100);
        return waves;
    }
}

public sealed class RolloutDevice
{
    public string Id { get; set; } = "";
    /// <summary>The model the device ran when the rollout started (name@version), where a rollback returns it.</summary>
    public string? From { get; set; }
    public string? FromSha { get; set; }
    public int Wave { get; set; }
    /// <summary>pending (not reached yet), sent, downloading … shadow, active, failed, rolled-back, rolling-back, offline (timed out: not updated).</summary>
    public string Phase { get; set; } = "pending";
    public string? Reason { get; set; }
    public ShadowFigures? Shadow { get; set; }
    public bool Confirmed { get; set; }
    public DateTimeOffset? SentAt { get; set; }
    public DateTimeOffset? UpdatedAt { get; set; }
}

public sealed class WaveResult
{
    public int Wave { get; set; }
    public int Devices { get; set; }
    public int Reported { get; set; }
    public int Offline { get; set; }
    public List<GateFigure> Gates { get; set; } = [];
    public string Outcome { get; set; } = "";
    public DateTimeOffset At { get; set; }
}

public sealed class GateFigure
{
    public string Gate { get; set; } = "";
    public double Value { get; set; }
    public bool Pass { get; set; }
}

/// <summary>
/// A condition on a wave's shadow figures: <c>agreement&gt;=0.95</c>, <c>latency_p99&lt;=1.2x</c> (ratio to the
/// active model) or <c>latency_p99&lt;=5ms</c>, <c>errors&lt;=0.1%</c>.
/// </summary>
public sealed partial class Gate
{
    public string Metric { get; set; } = "";
    public string Op { get; set; } = "";
    public double Threshold { get; set; }
    /// <summary>For latency: the threshold is a ratio to the active model's p99 (<c>1.2x</c>), not milliseconds.</summary>
    public bool Relative { get; set; }
    public string Text { get; set; } = "";

    public static readonly IReadOnlyList<string> Metrics = ["agreement", "latency_p99", "errors"];

    [GeneratedRegex(@"^\s*(?<m>[a-z_0-9]+)\s*(?<op>>=|<=|>|<)\s*(?<v>[0-9.]+)\s*(?<u>x|%|ms)?\s*$")]
    private static partial Regex Pattern();

    public static Gate Parse(string text)
    {
        var m = Pattern().Match(text);
        if (!m.Success) throw new FormatException($"gate '{text}' is not METRIC OP VALUE (e.g. agreement>=0.95, latency_p99<=1.2x, errors<=0.1%)");
        var metric = m.Groups["m"].Value;
        if (!Metrics.Contains(metric)) throw new FormatException($"gate '{text}': unknown metric '{metric}' (known: {string.Join(", ", Metrics)})");
        var v = double.Parse(m.Groups["v"].Value, CultureInfo.InvariantCulture);
        var unit = m.Groups["u"].Value;
        if (unit == "%") v /= 100;
        if (metric == "latency_p99" && unit is not ("x" or "ms")) throw new FormatException($"gate '{text}': latency needs a unit, x (ratio to the active model) or ms");
        if (metric != "latency_p99" && unit is "x" or "ms") throw new FormatException($"gate '{text}': '{unit}' makes no sense for {metric}");
        if (metric == "agreement" && v > 1) throw new FormatException($"gate '{text}': agreement is a share between 0 and 1 (or a percentage with %)");
        return new Gate { Metric = metric, Op = m.Groups["op"].Value, Threshold = v, Relative = unit == "x", Text = text.Trim() };
    }

    public bool Holds(double value) => Op switch
    {
        ">=" => value >= Threshold - 1e-12,
        ">" => value > Threshold,
        "<=" => value <= Threshold + 1e-12,
        _ => value < Threshold,
    };

    /// <summary>The wave's figure for this gate, pooled over the devices that shadowed: agreement and errors over all windows, latency as the median device (one busy device must not decide).</summary>
    public double Measure(IReadOnlyList<ShadowFigures> figures)
    {
        var runs = Math.Max(1, figures.Sum(f => f.Runs));
        return Metric switch
        {
            "agreement" => figures.Sum(f => f.Agreement * f.Runs) / runs,
            "errors" => (double)figures.Sum(f => f.Errors) / runs,
            _ => Median(figures.Select(f => Relative ? f.LatencyRatio : f.ShadowP99Ms)),
        };
    }

    private static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToList();
        return v.Count == 0 ? 0 : v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
    }
}
