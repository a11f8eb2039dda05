using EdgeMl.Benchmarks;

if (args.Length < 1 || args[0] != "drift")
{
    Console.Error.WriteLine("usage: edgeml-bench drift [--out bench-results/drift.json]");
    return 2;
}

return DriftBench.Run(args.Length >= 3 && args[1] == "--out" ? args[2] : "bench-results/drift.json");
