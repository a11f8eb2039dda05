namespace EdgeMl.Agent.Actions;

/// <summary>
/// Drives a GPIO output (a relay, an LED) while predictions match: either a class (<see cref="Label"/>
/// with probability ≥ <see cref="MinScore"/>) or a score threshold (<see cref="Above"/>, for anomaly and
/// regression outputs). Bound from <c>Agent:Actions:N</c>.
/// </summary>
public sealed class ActionRule
{
    public int Pin { get; set; } = -1;
    public string? Label { get; set; }
    public float MinScore { get; set; } = 0.5f;
    public float? Above { get; set; }
    /// <summary>Consecutive matching predictions before the pin is switched on (debounce).</summary>
    public int After { get; set; } = 1;
    /// <summary>Keep the pin on this long after the last match.</summary>
    public int HoldMs { get; set; }
    /// <summary>The pin is on when low (many relay boards).</summary>
    public bool ActiveLow { get; set; }
}
