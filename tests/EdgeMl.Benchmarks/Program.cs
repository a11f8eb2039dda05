using EdgeMl.Benchmarks;

string Out(string fallback) => args.Length >= 3 && args[1] == "--out" ? args[2] : fallback;

return args.Length >= 1 ? args[0] switch
{
    "drift" => DriftBench.Run(Out("bench-results/drift.json")),
    "models" => ModelsBench.Run(Out("bench-results/models.json")),
    "scale" => await ScaleBench.RunAsync(Options(args[1..])),
    "dashboard" => DashboardBench.Run(Out("bench-results/dashboard.json")),
    _ => Usage(),
} : Usage();

static int Usage()
{
    Console.Error.WriteLine("usage: edgeml-bench drift|models|scale|dashboard [--out bench-results/NAME.json]");
    Console.Error.WriteLine("       edgeml-bench scale [--devices 500] [--batches 5] [--batch 200] [--load 10000000] [--hub-dll edgeml-hub.dll]");
    return 2;
}

// --name value pairs; anything else is a usage error.
static Dictionary<string, string> Options(string[] rest)
{
    var o = new Dictionary<string, string>(StringComparer.Ordinal);
    for (var i = 0; i < rest.Length; i += 2)
    {
        if (!rest[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= rest.Length) throw new ArgumentException($"edgeml-bench: '{rest[i]}' is not --name value");
        o[rest[i][2..]] = rest[i + 1];
    }

    return o;
}
