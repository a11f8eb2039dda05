namespace EdgeMl.Agent;

/// <summary>Bad configuration or command-line input. <see cref="Key"/> names the setting as a config path.</summary>
public sealed class ConfigurationException(string key, string problem)
    : Exception($"configuration error at '{key}': {problem}")
{
    public string Key { get; } = key;
    public string Problem { get; } = problem;
}
