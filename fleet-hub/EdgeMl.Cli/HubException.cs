using EdgeMl.CommandLine;

namespace EdgeMl.Cli;

/// <summary>The hub said no (or could not be reached): one line for the user, exit 1.</summary>
public sealed class HubException(string message) : CliException(message);
