namespace EdgeMl.Agent.Hosting;

/// <summary>
/// The agent stopped because one of its stages (sensor, inference, a sink, the uplink, the health loop, drift, the
/// model updater) failed in a way it does not handle itself. <see cref="Exception.Message"/> is one line that names
/// the stage and the cause; the command prints it and exits non-zero, so a supervisor (systemd) restarts the agent.
/// </summary>
public sealed class AgentStoppedException : Exception
{
    public AgentStoppedException(string stage, Exception cause)
        : base($"{stage} failed: {OneLine(cause.Message)}", cause)
    {
        Stage = stage;
    }

    public AgentStoppedException()
    {
        Stage = "";
    }

    public AgentStoppedException(string message) : base(message)
    {
        Stage = "";
    }

    /// <summary>The stage that failed, e.g. <c>sensor</c>, <c>inference</c>, <c>sink result-log</c>, <c>uplink</c>.</summary>
    public string Stage { get; }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
