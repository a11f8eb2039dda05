using EdgeMl.FleetSim;

return await FleetSimProgram.MainAsync(args).ConfigureAwait(false);
