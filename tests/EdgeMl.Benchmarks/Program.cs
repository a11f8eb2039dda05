using EdgeMl.Benchmarks;

string Out(string fallback) => args.Length >= 3 && args[1] == "--out" ? args[2] : fallback;

return args.Length >= 1 ? args[0] switch
{
    "drift" => DriftBench.Run(Out("bench-results/drift.json")),
    "models" => ModelsBench.Run(Out("bench-results/models.json")),
    "dashboard" => DashboardBench.Run(Out("bench-results/dashboard.json")),
    _ => Usage(),
} : Usage();

static int Usage()
{
    Console.Error.WriteLine("usage: edgeml-bench drift|models|dashboard [--out bench-results/NAME.json]");
    return 2;
}
