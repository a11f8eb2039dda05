using System.Diagnostics;
using System.Globalization;
using System.Text;
using EdgeMl.Agent.Inference;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Agent.Sensors.Simulated;
using EdgeMl.Protocol.Packages;
using Microsoft.ML.OnnxRuntime;

using EdgeMl.CommandLine;

namespace EdgeMl.Agent.Cli;

/// <summary>
/// <c>bench PKG [--json FILE] [--rounds N] [--starts N]</c>: the agent's figures on this machine —
/// binary size, idle resident memory with the model loaded, cold start to first prediction (this binary
/// started again N times), the inference path against a bare <c>InferenceSession.Run</c> on the same
/// session and inputs (interleaved rounds, medians), and managed bytes allocated per prediction.
/// </summary>
public static class BenchCommand
{
    public static int Run(ParsedArgs args)
    {
        var path = args.Positional.Count == 1 ? args.Positional[0] : throw new UsageException("bench needs one package path: edgeml-agent bench PKG.edgepkg");
        var jsonPath = args.Get("json");
        var rounds = (int)(args.GetLong("rounds") ?? 15);
        var starts = (int)(args.GetLong("starts") ?? 7);

        var figures = new List<(string Key, double Value, string Target, string Unit, string What)>();

        var binary = Environment.ProcessPath!;
        var isNative = !Path.GetFileName(binary).StartsWith("dotnet", StringComparison.Ordinal);
        if (isNative)
        {
            figures.Add(("binary_mb", new FileInfo(binary).Length / 1048576.0, "<= 15", "MB", "native edgeml-agent, without libonnxruntime.so"));
        }

        // Measured before this process loads ONNX Runtime: pages it maps too are shared and would stay resident.
        if (isNative)
        {
            figures.Add(("rss_mb", AgentRssMb(binary, path, release: true), "<= 40", "MB", "resident memory of `run` with the model loaded, idle between windows"));
            figures.Add(("rss_no_release_mb", AgentRssMb(binary, path, release: false), "", "MB", "the same with Agent:ReleaseStartupPages=false"));
        }

        var package = ModelPackage.Open(path);
        using var runner = ModelRunner.Load(package, new InferenceSettings { Threads = 1, WarmupRuns = 5 });
        var predictor = new Predictor(runner);
        var windows = SimulatedWindows(package.Manifest);
        var prediction = new Prediction(package.Manifest);
        predictor.Predict(windows, prediction);

        if (isNative && starts > 0)
        {
            figures.Add(("cold_start_ms", ColdStartMs(binary, path, starts), "<= 150", "ms", $"process start → first JSON line, median of {starts}"));
        }

        var (agentUs, bareUs) = Overhead(predictor, runner, windows, prediction, rounds);
        figures.Add(("agent_path_us", agentUs, "", "µs", "agent inference path per window (median round)"));
        figures.Add(("bare_run_us", bareUs, "", "µs", "bare InferenceSession.Run, same inputs (median round)"));
        figures.Add(("overhead_ratio", agentUs / bareUs, "<= 1.05", "x", "agent path / bare Run"));

        const int n = 2000;
        for (var i = 0; i < 100; i++) predictor.Predict(windows, prediction);
        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < n; i++) predictor.Predict(windows, prediction);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        figures.Add(("alloc_bytes_per_prediction", (double)allocated / n, "0", "B", $"managed allocation per prediction, steady state ({n} runs)"));

        Console.WriteLine($"edgeml-agent bench — {package.Manifest.Name}@{package.Manifest.Version}, {RuntimeInformationText()}");
        Console.WriteLine($"{"key",-28} {"value",12} {"unit",-4} {"target",-9} figure");
        foreach (var f in figures)
        {
            Console.WriteLine($"{f.Key,-28} {f.Value,12:0.###} {f.Unit,-4} {f.Target,-9} {f.What}");
        }

        if (jsonPath is not null)
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(jsonPath));
            if (dir is not null) Directory.CreateDirectory(dir);
            var sb = new StringBuilder("{\n");
            sb.AppendJoin(",\n", figures.Select(f => $"  \"{f.Key}\": {Math.Round(f.Value, 4).ToString(CultureInfo.InvariantCulture)}"));
            sb.Append("\n}\n");
            File.WriteAllText(jsonPath, sb.ToString());
            Console.WriteLine($"figures written to {jsonPath}");
        }

        return 0;
    }

    private static (double AgentUs, double BareUs) Overhead(Predictor predictor, ModelRunner runner, float[][] windows, Prediction prediction, int rounds)
    {
        // Bare: the tensors the agent would feed, normalized once, through the plain Run API.
        predictor.Predict(windows, prediction);
        var m = runner.Manifest;
        var inputNames = m.Inputs.Select(i => i.Name).Concat(m.State.Select(s => s.Input)).Concat(m.Constants.Select(c => c.Name)).ToArray();
        var outputNames = m.Outputs.Select(o => o.Name).Concat(m.State.Select(s => s.Output)).ToArray();
        var inputs = m.Inputs.Select((i, k) => OrtValue.CreateTensorValueFromMemory(runner.Input(k).ToArray(), i.Shape.Select(d => Math.Max(d, 1)).ToArray()))
            .Concat(m.State.Select((s, k) => Typed(s.Type, [.. s.Shape], runner.StateBytes(k))))
            .Concat(m.Constants.Select(c =>
            {
                var bytes = new byte[ManifestValidator.Elements(c.Shape) * ElementTypes.Size(c.Type)];
                ElementTypes.Encode(c.Type, c.Values, ManifestValidator.Elements(c.Shape), bytes);
                return Typed(c.Type, [.. c.Shape], bytes);
            }))
            .ToArray();
        using var runOptions = new RunOptions();
        const int perRound = 200;
        var agent = new double[rounds];
        var bare = new double[rounds];
        for (var r = 0; r < rounds; r++)
        {
            var t0 = Stopwatch.GetTimestamp();
            for (var i = 0; i < perRound; i++) predictor.Predict(windows, prediction);
            agent[r] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds / perRound;

            t0 = Stopwatch.GetTimestamp();
            for (var i = 0; i < perRound; i++)
            {
                using var outputs = runner.Session.Run(runOptions, inputNames, inputs, outputNames);
            }

            bare[r] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds / perRound;
        }

        foreach (var v in inputs) v.Dispose();
        return (Median(agent), Median(bare));
    }

    /// <summary>A tensor of any manifest element type holding <paramref name="bytes"/> (little-endian elements).</summary>
    private static OrtValue Typed(string type, long[] shape, ReadOnlySpan<byte> bytes)
    {
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, ModelRunner.OrtType(type), shape);
        bytes.CopyTo(value.GetTensorMutableRawData());
        return value;
    }

    private static double ColdStartMs(string binary, string package, int starts)
    {
        var times = new List<double>();
        for (var i = 0; i < starts; i++)
        {
            var psi = new ProcessStartInfo(binary)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var a in new[] { "run", "--model", package, "--sensor", "sim:vibration", "--count", "1", "--fast", "--quiet" }) psi.ArgumentList.Add(a);
            var t0 = Stopwatch.GetTimestamp();
            using var p = Process.Start(psi)!;
            var line = p.StandardOutput.ReadLine();
            var ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            p.WaitForExit();
            if (line is null || !line.StartsWith('{'))
            {
                throw new InvalidOperationException($"cold start run printed no prediction: {p.StandardError.ReadToEnd()}");
            }

            times.Add(ms);
        }

        return Median(times.ToArray());
    }

    private static float[][] SimulatedWindows(ModelManifest m)
    {
        using var sim = new VibrationSimulator(new VibrationSettings { Seed = 7 });
        var sample = new float[3];
        var windows = m.Inputs.Select(i => new float[i.Source!.Window * i.Source.Channels.Count]).ToArray();
        for (var t = 0; t < m.Inputs[0].Source!.Window; t++)
        {
            sim.Read(sample);
            for (var i = 0; i < windows.Length; i++)
            {
                var c = m.Inputs[i].Source!.Channels.Count;
                for (var ch = 0; ch < c; ch++) windows[i][t * c + ch] = sample[ch % sample.Length];
            }
        }

        return windows;
    }

    /// <summary>
    /// Starts the agent as a user would (real-time simulated sensor: a window every 128 ms, idle in
    /// between), waits for its first prediction and two more seconds, and reads its resident set.
    /// </summary>
    private static double AgentRssMb(string binary, string package, bool release)
    {
        var psi = new ProcessStartInfo(binary) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "run", "--model", package, "--sensor", "sim:vibration", "--quiet", $"--Agent:ReleaseStartupPages={(release ? "true" : "false")}" }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        try
        {
            if (p.StandardOutput.ReadLine() is null)
            {
                throw new InvalidOperationException($"agent printed no prediction: {p.StandardError.ReadToEnd()}");
            }

            var drain = p.StandardOutput.BaseStream.CopyToAsync(Stream.Null);
            Thread.Sleep(2000);
            return ResidentMb($"/proc/{p.Id}/status");
        }
        finally
        {
            p.Kill();
            p.WaitForExit();
        }
    }

    private static double ResidentMb(string statusFile)
    {
        foreach (var line in File.ReadLines(statusFile))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                var kb = long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);
                return kb / 1024.0;
            }
        }

        return double.NaN;
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static string RuntimeInformationText() =>
        $"{System.Runtime.InteropServices.RuntimeInformation.OSArchitecture}, {Environment.ProcessorCount} cores, ONNX Runtime {OrtEnv.Instance().GetVersionString()}";
}
