using System.Device.Gpio;
using EdgeMl.Agent.Pipeline;
using Microsoft.Extensions.Logging;

namespace EdgeMl.Agent.Actions;

/// <summary>
/// Applies the <see cref="ActionRule"/>s to each prediction: switches their pins and reports each switch as an
/// alert (<see cref="RuleSwitched"/>) to whoever stores alerts.
/// </summary>
public sealed partial class GpioActions : IPredictionSink, IDisposable
{
    private readonly GpioController? _gpio;
    private readonly ActionRule[] _rules;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly int[] _streak;
    private readonly long[] _lastMatch;
    private readonly bool[] _on;

    /// <summary><paramref name="gpio"/> may be null when no rule has a pin.</summary>
    public GpioActions(GpioController? gpio, IReadOnlyList<ActionRule> rules, TimeProvider time, ILogger logger)
    {
        _gpio = gpio;
        _rules = rules.ToArray();
        _time = time;
        _logger = logger;
        _streak = new int[_rules.Length];
        _lastMatch = new long[_rules.Length];
        _on = new bool[_rules.Length];
        foreach (var rule in _rules.Where(r => r.Pin >= 0))
        {
            (_gpio ?? throw new ArgumentNullException(nameof(gpio), $"rule on GPIO {rule.Pin} needs a GPIO controller"))
                .OpenPin(rule.Pin, PinMode.Output, Level(rule, on: false));
        }
    }

    public string Name => "actions";

    /// <summary>Raised when a rule with <see cref="ActionRule.Alert"/> switches on or off.</summary>
    public event Action<RuleSwitch>? RuleSwitched;

    public void OnPrediction(Prediction p)
    {
        var now = _time.GetTimestamp();
        for (var i = 0; i < _rules.Length; i++)
        {
            var rule = _rules[i];
            var match = rule.Label is not null
                ? string.Equals(p.Label, rule.Label, StringComparison.Ordinal) && p.Score >= rule.MinScore
                : p.Score > rule.Above;
            if (match)
            {
                _streak[i]++;
                _lastMatch[i] = now;
                if (!_on[i] && _streak[i] >= rule.After)
                {
                    Switch(i, on: true, p);
                }
            }
            else
            {
                _streak[i] = 0;
                if (_on[i] && _time.GetElapsedTime(_lastMatch[i], now).TotalMilliseconds >= rule.HoldMs)
                {
                    Switch(i, on: false, p);
                }
            }
        }
    }

    private void Switch(int i, bool on, Prediction p)
    {
        var rule = _rules[i];
        if (rule.Pin >= 0) _gpio!.Write(rule.Pin, Level(rule, on));
        _on[i] = on;
        var result = p.Label ?? p.Score.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture);
        LogSwitched(_logger, RuleName(rule), rule.Pin >= 0 ? $"GPIO {rule.Pin}" : "alert only", on ? "on" : "off", result, p.Sequence);
        if (rule.Alert) RuleSwitched?.Invoke(new RuleSwitch(i, RuleName(rule), rule.Pin >= 0 ? rule.Pin : null, on, p.Label, p.Score, p.Sequence, _time.GetUtcNow()));
    }

    public static string RuleName(ActionRule rule) =>
        rule.Name ?? rule.Label ?? $"score>{rule.Above?.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)}";

    private static PinValue Level(ActionRule rule, bool on) => on ^ rule.ActiveLow ? PinValue.High : PinValue.Low;

    public void Dispose()
    {
        foreach (var rule in _rules.Where(r => r.Pin >= 0))
        {
            if (_gpio!.IsPinOpen(rule.Pin))
            {
                _gpio.Write(rule.Pin, Level(rule, on: false));
                _gpio.ClosePin(rule.Pin);
            }
        }
    }

    [LoggerMessage(EventId = 1300, Level = LogLevel.Information, Message = "Rule {Rule} ({Target}) {State} (prediction {Result}, #{Sequence})")]
    private static partial void LogSwitched(ILogger logger, string rule, string target, string state, string result, long sequence);
}

/// <summary>A rule switched on or off on prediction <see cref="Sequence"/>.</summary>
public readonly record struct RuleSwitch(int Index, string Name, int? Pin, bool On, string? Label, float Score, long Sequence, DateTimeOffset At);
