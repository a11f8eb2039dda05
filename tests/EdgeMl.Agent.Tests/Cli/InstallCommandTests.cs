using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Cli;

/// <summary><c>edgeml-agent install</c> (this build, as a process) into a throwaway root: what it writes, twice, and undoes.</summary>
public sealed class InstallCommandTests : IDisposable
{
    private readonly TempDirectory _root = new();
    private static readonly string BinDir = AppContext.BaseDirectory.TrimEnd('/');

    public void Dispose() => _root.Dispose();

    private string Unit => Path.Combine(_root.Path, "etc/systemd/system/edgeml-agent.service");
    private string Config => Path.Combine(_root.Path, "etc/edgeml/agent.json");

    [Fact]
    public void Install_writes_the_package_unit_and_config_for_this_folder_and_again_changes_nothing()
    {
        var (code, stdout, stderr) = AgentProcess.Agent("install", "--root", _root.Path);
        Assert.True(code == 0, stderr);
        Assert.Contains($"wrote {Unit}", stdout, StringComparison.Ordinal);
        Assert.Contains($"wrote {Config}", stdout, StringComparison.Ordinal);

        var unit = File.ReadAllText(Unit);
        var packaged = File.ReadAllText(Path.Combine(TestPackages.RepositoryRoot, "packaging/agent/edgeml-agent.service"));
        Assert.Contains($"ExecStart={BinDir}/edgeml-agent run --config /etc/edgeml/agent.json", unit, StringComparison.Ordinal);
        Assert.DoesNotContain("/usr/lib/edgeml-agent", unit, StringComparison.Ordinal);
        Assert.EndsWith(packaged.Replace("/usr/lib/edgeml-agent", BinDir, StringComparison.Ordinal), unit, StringComparison.Ordinal); // the package's unit, not a copy of it
        Assert.Contains($"\"Model\": \"{BinDir}/models/vibration-fault-int8.edgepkg\"", File.ReadAllText(Config), StringComparison.Ordinal);
        var written = (File.GetLastWriteTimeUtc(Unit), File.ReadAllText(Config));

        (code, stdout, stderr) = AgentProcess.Agent("install", "--root", _root.Path);
        Assert.True(code == 0, stderr);
        Assert.Contains($"{Unit}: unchanged", stdout, StringComparison.Ordinal);
        Assert.Contains($"{Config}: unchanged", stdout, StringComparison.Ordinal);
        Assert.Equal(written, (File.GetLastWriteTimeUtc(Unit), File.ReadAllText(Config)));

        // systemd accepts the unit as written (ExecStart= is this build's apphost, which exists).
        var (verify, vout, verr) = AgentProcess.Exec("systemd-analyze", null, ["verify", Unit]);
        Assert.True(verify == 0 && (vout + verr).Trim().Length == 0, vout + verr);
    }

    [Fact]
    public void Install_keeps_an_edited_config_and_uninstall_removes_only_what_is_unchanged()
    {
        Assert.Equal(0, AgentProcess.Agent("install", "--root", _root.Path).ExitCode);
        File.WriteAllText(Config, File.ReadAllText(Config).Replace("\"Threads\": 1", "\"Threads\": 2", StringComparison.Ordinal));
        var edited = File.ReadAllText(Config);

        var (_, stdout, _) = AgentProcess.Agent("install", "--root", _root.Path);
        Assert.Contains($"{Config}: kept (yours)", stdout, StringComparison.Ordinal);
        Assert.Equal(edited, File.ReadAllText(Config));

        var (code, uout, uerr) = AgentProcess.Agent("install", "--uninstall", "--root", _root.Path);
        Assert.True(code == 0, uerr);
        Assert.False(File.Exists(Unit));
        Assert.Contains($"kept {Config} (changed since install)", uout, StringComparison.Ordinal);
        Assert.Equal(edited, File.ReadAllText(Config));

        (code, uout, _) = AgentProcess.Agent("install", "--uninstall", "--root", _root.Path);
        Assert.Equal(0, code);
        Assert.Contains("not there (nothing to remove)", uout, StringComparison.Ordinal);
    }

    [Fact]
    public void Uninstall_of_an_unchanged_install_leaves_nothing()
    {
        Assert.Equal(0, AgentProcess.Agent("install", "--root", _root.Path).ExitCode);
        var (code, _, stderr) = AgentProcess.Agent("install", "--uninstall", "--root", _root.Path);
        Assert.True(code == 0, stderr);
        Assert.Empty(Directory.GetFiles(_root.Path, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public void Install_refuses_where_the_package_already_runs_the_agent_and_a_unit_it_did_not_write()
    {
        var packageUnit = Path.Combine(_root.Path, "lib/systemd/system/edgeml-agent.service");
        Directory.CreateDirectory(Path.GetDirectoryName(packageUnit)!);
        File.WriteAllText(packageUnit, "[Service]\n");
        var (code, _, stderr) = AgentProcess.Agent("install", "--root", _root.Path);
        Assert.Equal(1, code);
        Assert.Equal("error: the edgeml-agent package is installed: its unit already runs the agent (`apt remove edgeml-agent` first to use install instead)", stderr.Trim());
        File.Delete(packageUnit);

        Directory.CreateDirectory(Path.GetDirectoryName(Unit)!);
        File.WriteAllText(Unit, "[Service]\nExecStart=/opt/mine\n");
        (code, _, stderr) = AgentProcess.Agent("install", "--uninstall", "--root", _root.Path);
        Assert.Equal(1, code);
        Assert.Contains("was not written by `edgeml-agent install`: left as it is", stderr, StringComparison.Ordinal);
        Assert.True(File.Exists(Unit));
    }

    [Fact]
    public void Install_keeps_a_unit_it_did_not_write_or_that_was_edited_unless_forced_naming_the_file()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Unit)!);
        const string foreign = "[Service]\nExecStart=/opt/mine\n";
        File.WriteAllText(Unit, foreign);
        var (code, stdout, stderr) = AgentProcess.Agent("install", "--root", _root.Path);
        Assert.Equal(1, code);
        Assert.Equal($"error: {Unit} was not written by `edgeml-agent install`: kept (run install --force to replace it)", stderr.Trim());
        Assert.Equal(foreign, File.ReadAllText(Unit));
        Assert.DoesNotContain("wrote", stdout, StringComparison.Ordinal);

        (code, _, stderr) = AgentProcess.Agent("install", "--root", _root.Path, "--force");
        Assert.True(code == 0, stderr);
        var ours = File.ReadAllText(Unit);
        Assert.Contains($"ExecStart={BinDir}/edgeml-agent run", ours, StringComparison.Ordinal);

        // An administrator's edit of our unit is kept too; --force replaces it.
        var edited = ours.Replace("[Service]", "[Service]\nNice=5", StringComparison.Ordinal);
        File.WriteAllText(Unit, edited);
        (code, _, stderr) = AgentProcess.Agent("install", "--root", _root.Path);
        Assert.Equal(1, code);
        Assert.StartsWith($"error: {Unit} was edited since `edgeml-agent install` wrote it: kept", stderr.Trim(), StringComparison.Ordinal);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.Equal(edited, File.ReadAllText(Unit));
        // … and uninstall does not remove the edited unit either.
        (code, _, stderr) = AgentProcess.Agent("install", "--uninstall", "--root", _root.Path);
        Assert.Equal(1, code);
        Assert.StartsWith($"error: {Unit} was edited since `edgeml-agent install` wrote it: left as it is", stderr.Trim(), StringComparison.Ordinal);
        Assert.Equal(edited, File.ReadAllText(Unit));
        (code, _, stderr) = AgentProcess.Agent("install", "--root", _root.Path, "--force");
        Assert.True(code == 0, stderr);
        Assert.Equal(ours, File.ReadAllText(Unit));
    }

    [Fact]
    public void An_empty_root_is_a_usage_error_in_one_line()
    {
        var (code, stdout, stderr) = AgentProcess.Agent("install", "--root", "");
        Assert.Equal(2, code);
        Assert.Empty(stdout);
        Assert.Equal("error: --root: give a directory (the value is empty) (see 'edgeml-agent install --help')", stderr.Trim());
    }

    [Fact]
    public void Uninstall_under_a_root_names_the_paths_under_it()
    {
        Assert.Equal(0, AgentProcess.Agent("install", "--root", _root.Path).ExitCode);
        Directory.CreateDirectory(Path.Combine(_root.Path, "var/lib/edgeml"));
        var (code, stdout, stderr) = AgentProcess.Agent("install", "--uninstall", "--root", _root.Path);
        Assert.True(code == 0, stderr);
        Assert.Contains($"kept {Path.Combine(_root.Path, "var/lib/edgeml")} ", stdout, StringComparison.Ordinal);
        // Every path the output names lies under the root (none of the machine's own /var/lib/edgeml or /etc).
        foreach (System.Text.RegularExpressions.Match path in System.Text.RegularExpressions.Regex.Matches(stdout, @"(?<=\s|^)/[^\s:()]+"))
        {
            Assert.StartsWith(_root.Path, path.Value, StringComparison.Ordinal);
        }
    }

    [SkippableFact]
    public void Install_without_root_dir_refuses_clearly_where_systemd_does_not_run()
    {
        Skip.If(Directory.Exists("/run/systemd/system"), "systemd runs here: install would really install");
        var (code, stdout, stderr) = AgentProcess.Agent("install");
        Assert.Equal(1, code);
        Assert.Empty(stdout);
        Assert.Matches(Environment.IsPrivilegedProcess
            ? "^error: systemd is not running on this machine \\(no /run/systemd/system\\): start the agent from your init system with `.*edgeml-agent run --config /etc/edgeml/agent.json`$"
            : "^error: install needs root .*sudo$", stderr.Trim());
    }
}
