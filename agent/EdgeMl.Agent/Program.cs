using EdgeMl.Agent.Cli;

return await AgentProgram.MainAsync(args).ConfigureAwait(false);
