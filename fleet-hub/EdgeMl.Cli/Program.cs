using EdgeMl.Cli;

return await EdgeMlCli.MainAsync(args, Console.Out, Console.Error).ConfigureAwait(false);
