using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using EdgeMl.Agent.Tests.Cli;
using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Packaging;

/// <summary>
/// The Debian packages from <c>./build.sh package</c> (artifacts/packages): what they hold, and installed with dpkg into a
/// throwaway root (<c>dpkg --root … --force-script-chrootless</c>: the maintainer scripts run here with DPKG_ROOT set and
/// create the users, groups and state directories in that root), the installed programs started from there.
/// <c>./build.sh test</c> builds the packages first and sets EDGEML_REQUIRE_PUBLISHED=1, so there these cannot skip.
/// </summary>
public sealed partial class PackageTests : IDisposable
{
    private static readonly string Packages = Path.Combine(TestPackages.RepositoryRoot, "artifacts", "packages");
    private static readonly string Version = Regex.Match(File.ReadAllText(Path.Combine(TestPackages.RepositoryRoot, "Directory.Build.props")),
        "<VersionPrefix>(.*)</VersionPrefix>").Groups[1].Value;

    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string Deb(string package, string arch)
    {
        var path = Path.Combine(Packages, $"{package}_{Version}_{arch}.deb");
        if (Environment.GetEnvironmentVariable("EDGEML_REQUIRE_PUBLISHED") == "1") Assert.True(File.Exists(path), $"{path} is missing: ./build.sh package did not run");
        Skip.IfNot(File.Exists(path), $"{path} not built (run ./build.sh package)");
        return path;
    }

    private static string Run(string program, params string[] args)
    {
        var (code, stdout, stderr) = AgentProcess.Exec(program, null, args);
        Assert.True(code == 0, $"{program} {string.Join(' ', args)} exited {code}: {stderr}{stdout}");
        return stdout;
    }

    [SkippableTheory]
    [InlineData("amd64")]
    [InlineData("arm64")]
    public void Agent_package_holds_the_native_agent_its_runtime_models_unit_and_conffile(string arch)
    {
        var deb = Deb("edgeml-agent", arch);
        var contents = Run("dpkg-deb", "--contents", deb);
        foreach (var file in new[]
                 {
                     "./usr/lib/edgeml-agent/edgeml-agent", "./usr/lib/edgeml-agent/libonnxruntime.so", "./usr/lib/edgeml-agent/models/vibration-fault-int8.edgepkg",
                     "./usr/bin/edgeml-agent -> ../lib/edgeml-agent/edgeml-agent", "./lib/systemd/system/edgeml-agent.service", "./etc/edgeml/agent.json",
                     "./usr/share/doc/edgeml-agent/copyright", "./usr/share/doc/edgeml-agent/changelog.gz",
                 })
        {
            Assert.Contains(file, contents, StringComparison.Ordinal);
        }

        Assert.Matches(@"-rwxr-xr-x root/root +\d+ [\d-]+ [\d:]+ \./usr/lib/edgeml-agent/edgeml-agent\n", contents);
        Assert.DoesNotContain("appsettings.json", contents, StringComparison.Ordinal);

        var info = Run("dpkg-deb", "--info", deb);
        Assert.Contains($" Version: {Version}\n", info, StringComparison.Ordinal);
        Assert.Contains($" Architecture: {arch}\n", info, StringComparison.Ordinal);
        Assert.Matches(@" Depends: .*libc6 \(>= [\d.]+\).*libstdc\+\+6.*libssl3", info);
        foreach (var script in new[] { "postinst", "prerm", "postrm", "conffiles" }) Assert.Matches($@"\d+ bytes, +\d+ lines +\*? +{script}", info);
        Assert.Equal("/etc/edgeml/agent.json", Field(deb, "conffiles").Trim());

        // The binary is built for the package's architecture (ELF e_machine: 0x3e x86-64, 0xb7 AArch64).
        var files = Path.Combine(_dir.Path, arch);
        Run("dpkg-deb", "-x", deb, files);
        var elf = File.ReadAllBytes(Path.Combine(files, "usr/lib/edgeml-agent/edgeml-agent"))[..20];
        Assert.Equal(arch == "amd64" ? 0x3e : 0xb7, elf[18]);
    }

    [SkippableTheory]
    [InlineData("amd64")]
    [InlineData("arm64")]
    public void Hub_package_holds_the_hub_the_cli_their_unit_and_conffile(string arch)
    {
        var deb = Deb("edgeml-hub", arch);
        var contents = Run("dpkg-deb", "--contents", deb);
        foreach (var file in new[]
                 {
                     "./usr/lib/edgeml-hub/edgeml-hub", "./usr/lib/edgeml-hub/edgeml", "./usr/bin/edgeml -> ../lib/edgeml-hub/edgeml",
                     "./usr/bin/edgeml-hub -> ../lib/edgeml-hub/edgeml-hub", "./lib/systemd/system/edgeml-hub.service", "./etc/edgeml/hub.json",
                 })
        {
            Assert.Contains(file, contents, StringComparison.Ordinal);
        }

        var info = Run("dpkg-deb", "--info", deb);
        Assert.Contains($" Version: {Version}\n", info, StringComparison.Ordinal);
        Assert.Contains($" Architecture: {arch}\n", info, StringComparison.Ordinal);
        foreach (var script in new[] { "postinst", "prerm", "postrm", "conffiles" }) Assert.Matches($@"\d+ bytes, +\d+ lines +\*? +{script}", info);
        Assert.Equal("/etc/edgeml/hub.json", Field(deb, "conffiles").Trim());
    }

    private static string Field(string deb, string controlFile) => Run("dpkg-deb", "--info", deb, controlFile);

    [SkippableFact]
    public async Task Packages_install_into_a_throwaway_root_run_from_there_and_purge_cleanly()
    {
        var agentDeb = Deb("edgeml-agent", "amd64");
        var hubDeb = Deb("edgeml-hub", "amd64");
        var root = Path.Combine(_dir.Path, "root");
        // A root with what the maintainer scripts touch: the account files (with an i2c and a gpio group, no spi) and dpkg's database.
        Directory.CreateDirectory(Path.Combine(root, "etc"));
        File.WriteAllText(Path.Combine(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
        File.WriteAllText(Path.Combine(root, "etc/group"), "root:x:0:\ngpio:x:997:\ni2c:x:998:\n");
        foreach (var d in new[] { "var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers" }) Directory.CreateDirectory(Path.Combine(root, d));
        File.WriteAllText(Path.Combine(root, "var/lib/dpkg/status"), "");

        string[] dpkg = [$"--root={root}", "--force-script-chrootless", "--force-depends", "--log=/dev/null"];
        Run("dpkg", [.. dpkg, "--install", agentDeb, hubDeb]);

        // postinst: users, group membership where the group exists, state directories, the units enabled.
        var passwd = File.ReadAllText(Path.Combine(root, "etc/passwd"));
        Assert.Matches(@"(?m)^edgeml:[x!]:\d+:\d+:EdgeMl agent:/var/lib/edgeml:/usr/sbin/nologin$", passwd);
        Assert.Matches(@"(?m)^edgeml-hub:[x!]:\d+:\d+:EdgeMl fleet hub:/var/lib/edgeml-hub:/usr/sbin/nologin$", passwd);
        var group = File.ReadAllText(Path.Combine(root, "etc/group"));
        Assert.Matches("(?m)^gpio:x:997:edgeml$", group);
        Assert.Matches("(?m)^i2c:x:998:edgeml$", group);
        Assert.DoesNotMatch("(?m)^spi:", group);
        Assert.True(Directory.Exists(Path.Combine(root, "var/lib/edgeml")));
        Assert.True(Directory.Exists(Path.Combine(root, "var/lib/edgeml-hub")));
        // deb-systemd-helper enabled both units inside the root (DPKG_ROOT), as on a fresh install.
        Assert.Equal("/lib/systemd/system/edgeml-agent.service", new FileInfo(Path.Combine(root, "etc/systemd/system/multi-user.target.wants/edgeml-agent.service")).LinkTarget);
        Assert.Equal("/lib/systemd/system/edgeml-hub.service", new FileInfo(Path.Combine(root, "etc/systemd/system/multi-user.target.wants/edgeml-hub.service")).LinkTarget);

        // systemd accepts both installed units (ExecStart= pointed into the root, everything else as installed).
        foreach (var unit in new[] { "edgeml-agent", "edgeml-hub" })
        {
            var copy = Path.Combine(_dir.Path, unit + ".service");
            File.WriteAllText(copy, File.ReadAllText(Path.Combine(root, $"lib/systemd/system/{unit}.service")).Replace("ExecStart=/", $"ExecStart={root}/", StringComparison.Ordinal));
            var (code, vout, verr) = AgentProcess.Exec("systemd-analyze", null, ["verify", copy]);
            Assert.True(code == 0 && (vout + verr).Trim().Length == 0, $"{unit}: {vout}{verr}");
        }

        // The installed agent: its version, the bundled model, and a short run on the installed (commented) config.
        var agent = Path.Combine(root, "usr/lib/edgeml-agent/edgeml-agent");
        Assert.StartsWith(Version + "+", Run(agent, "--version").Trim(), StringComparison.Ordinal);
        Assert.Contains("ok", Run(agent, "check-model", Path.Combine(root, "usr/lib/edgeml-agent/models/vibration-fault-int8.edgepkg")), StringComparison.OrdinalIgnoreCase);
        var predictions = Run(agent, "run", "--config", Path.Combine(root, "etc/edgeml/agent.json"), "--log-format", "json",
            $"--Agent:Model={root}/usr/lib/edgeml-agent/models/vibration-fault-int8.edgepkg", $"--Agent:DataDirectory={root}/var/lib/edgeml",
            "--Agent:Pipeline:Count=3", "--Agent:Pipeline:Realtime=false", "--Agent:Gpio:Driver=simulated");
        Assert.Equal(3, predictions.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.True(File.Exists(Path.Combine(root, "var/lib/edgeml/agent.db")), "the outbox in the state directory");

        // The installed hub (its installed config, ports moved for the test) answers; the installed CLI runs.
        Assert.StartsWith(Version + "+", Run(Path.Combine(root, "usr/lib/edgeml-hub/edgeml-hub"), "--version").Trim(), StringComparison.Ordinal);
        Assert.StartsWith(Version + "+", Run(Path.Combine(root, "usr/lib/edgeml-hub/edgeml"), "--version").Trim(), StringComparison.Ordinal);
        await HubAnswers(root);

        // remove keeps the configuration and the state; purge removes them and the units' enablement.
        Run("dpkg", [.. dpkg, "--remove", "edgeml-agent"]);
        Assert.False(File.Exists(agent));
        Assert.True(File.Exists(Path.Combine(root, "etc/edgeml/agent.json")));
        Assert.True(Directory.Exists(Path.Combine(root, "var/lib/edgeml")));
        Run("dpkg", [.. dpkg, "--purge", "edgeml-agent", "edgeml-hub"]);
        Assert.False(File.Exists(Path.Combine(root, "etc/edgeml/agent.json")));
        Assert.False(File.Exists(Path.Combine(root, "etc/edgeml/hub.json")));
        Assert.False(Directory.Exists(Path.Combine(root, "var/lib/edgeml")));
        Assert.False(Directory.Exists(Path.Combine(root, "var/lib/edgeml-hub")));
        Assert.False(File.Exists(Path.Combine(root, "etc/systemd/system/multi-user.target.wants/edgeml-agent.service")));
    }

    private static async Task HubAnswers(string root)
    {
        var http = EdgeMl.TestUtilities.Mqtt.Mosquitto.FreePort();
        var mqtt = EdgeMl.TestUtilities.Mqtt.Mosquitto.FreePort();
        var psi = new ProcessStartInfo(Path.Combine(root, "usr/lib/edgeml-hub/edgeml-hub")) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[]
                 {
                     "--config", Path.Combine(root, "etc/edgeml/hub.json"), "--log-format", "json", "--Data", Path.Combine(root, "var/lib/edgeml-hub"),
                     "--urls", $"http://127.0.0.1:{http}", "--MqttAddress", "127.0.0.1", "--MqttPort", mqtt.ToString(System.Globalization.CultureInfo.InvariantCulture),
                 })
        {
            psi.ArgumentList.Add(a);
        }

        var log = new System.Text.StringBuilder();
        using var hub = Process.Start(psi)!;
        var listening = new TaskCompletionSource();
        hub.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (log) log.AppendLine(e.Data);
            if (e.Data.Contains("Now listening on", StringComparison.Ordinal)) listening.TrySetResult();
        };
        hub.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        hub.BeginOutputReadLine();
        hub.BeginErrorReadLine();
        try
        {
            var exited = hub.WaitForExitAsync();
            if (await Task.WhenAny(listening.Task, exited, Task.Delay(TimeSpan.FromSeconds(90))) != listening.Task)
            {
                lock (log) Assert.Fail($"the installed hub did not start listening:\n{log}");
            }

            string logged;
            lock (log) logged = log.ToString();
            Assert.All(logged.Split('\n', StringSplitOptions.RemoveEmptyEntries), line => Assert.StartsWith("{\"Timestamp\":", line, StringComparison.Ordinal)); // --log-format json
            Assert.Contains("\"EventId\":", logged, StringComparison.Ordinal);

            var token = (await File.ReadAllTextAsync(Path.Combine(root, "var/lib/edgeml-hub/operator.token"))).Trim();
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}/") };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var response = await client.GetAsync(new Uri("api/devices", UriKind.Relative));
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("[]", await response.Content.ReadAsStringAsync());
        }
        finally
        {
            hub.Kill(entireProcessTree: true);
            await hub.WaitForExitAsync();
        }
    }

    [SkippableFact]
    public void Lintian_finds_no_errors_in_the_packages()
    {
        var agent = Deb("edgeml-agent", "amd64");
        Skip.If(!File.Exists("/usr/bin/lintian"), "lintian is not installed (./build.sh package installs it)");
        // The build ran lintian on all four (an error fails it); its report is kept. Here again on the agent, the quick one.
        Assert.DoesNotMatch("(?m)^E: ", File.ReadAllText(Path.Combine(Packages, "lintian.txt")));
        var (code, stdout, stderr) = AgentProcess.Exec("lintian", null, ["--tag-display-limit", "0", agent]);
        Assert.True(code != 2, $"lintian failed to run: {stderr}");
        Assert.DoesNotMatch("(?m)^E: ", stdout);
        Assert.Contains("no-manual-page", stdout, StringComparison.Ordinal); // it did look at the package
    }
}
