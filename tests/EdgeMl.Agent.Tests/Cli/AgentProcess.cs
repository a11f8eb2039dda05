using System.Diagnostics;

namespace EdgeMl.Agent.Tests.Cli;

/// <summary>Runs the agent as a separate process, the way a user does, and captures what it prints.</summary>
internal static class AgentProcess
{
    /// <summary>Runs this build's agent (edgeml-agent.dll next to the tests) through the dotnet host.</summary>
    public static (int ExitCode, string Stdout, string Stderr) Agent(params string[] args) =>
        Exec("dotnet", null, [Path.Combine(AppContext.BaseDirectory, "edgeml-agent.dll"), .. args]);

    /// <summary>Starts this build's agent and lets it run; its output is read and discarded.</summary>
    public static Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "edgeml-agent.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    public static (int ExitCode, string Stdout, string Stderr) Exec(string executable, Dictionary<string, string>? env, string[] args)
    {
        var psi = new ProcessStartInfo(executable) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{executable} {string.Join(' ', args)} did not finish in 120 s");
        }

        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
