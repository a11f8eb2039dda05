namespace EdgeMl.Agent.Actions;

/// <summary>
/// Acts while predictions match: either a class (<see cref="Label"/> with probability ≥ <see cref="MinScore"/>)
/// or a score threshold (<see cref="Above"/>, for anomaly and regression outputs). It drives a GPIO output
/// (a relay, an LED) when <see cref="Pin"/> is set, and raises an alert record — sent to the hub ahead of all
/// telemetry — when it switches on and when it clears (<see cref="Alert"/>). Bound from <c>Agent:Actions:N</c>.
/// </summary>
public sealed class ActionRule
{
    /// <summary>The GPIO output to drive; -1 (the default): none, the rule only raises alerts.</summary>
    public int Pin { get; set; } = -1;
    public string? Label { get; set; }
    public float MinScore { get; set; } = 0.5f;
    public float? Above { get; set; }
    /// <summary>Consecutive matching predictions before the rule switches on (debounce).</summary>
    public int After { get; set; } = 1;
    /// <summary>Stay on this long after the last match.</summary>
    public int HoldMs { get; set; }
    /// <summary>The pin is on when low (many relay boards).</summary>
    public bool ActiveLow { get; set; }
    /// <summary>Raise an alert record on each switch (on by default).</summary>
    public bool Alert { get; set; } = true;
    /// <summary>A name for the alert; default: the label or the threshold.</summary>
    public string? Name { get; set; }
}
