using System.Diagnostics;
using System.Reflection;
using EdgeMl.Agent.Configuration;
using EdgeMl.CommandLine;

namespace EdgeMl.Agent.Cli;

/// <summary>
/// <c>edgeml-agent install [--uninstall] [--root DIR] [--no-start]</c>: the edgeml-agent package's service for a machine
/// without the package. Writes the package's own unit (<c>packaging/agent/edgeml-agent.service</c>, embedded in the
/// binary) to <c>/etc/systemd/system/edgeml-agent.service</c> with <c>ExecStart=</c> where this binary lies, and the
/// package's <c>/etc/edgeml/agent.json</c> (models beside the binary) unless one is there; creates the system user
/// <c>edgeml</c> in the gpio/i2c/spi groups that exist, and enables and starts the service. Running it again changes
/// nothing that is already right. <c>--uninstall</c> stops and disables the service and removes the unit, and the
/// configuration only when it is still as written; <c>/var/lib/edgeml</c> (outbox, identity) is kept.
/// Refused, with one line saying why: not root, no systemd, a binary under /home (the unit's ProtectHome hides it), or
/// the package already installed, or a unit file there that install did not write or that was edited since (its second
/// line holds the SHA-256 of the rest; <c>--force</c> replaces it). <c>--root DIR</c> writes under DIR and runs nothing
/// (tests, image builders).
/// </summary>
public static class InstallCommand
{
    /// <summary>Where the package puts the binary; the embedded unit and config name it, and install replaces it.</summary>
    public const string PackageDirectory = "/usr/lib/edgeml-agent";

    /// <summary>The unit file install writes (relative to the root).</summary>
    public const string UnitPath = "etc/systemd/system/edgeml-agent.service";

    /// <summary>The configuration file install writes when absent (relative to the root).</summary>
    public const string ConfigPath = "etc/edgeml/agent.json";

    private const string Marker = "# Written by `edgeml-agent install`; `edgeml-agent install --uninstall` removes it.";

    /// <summary>
    /// Second line of a unit install wrote: the SHA-256 of everything after it, so that install can tell its own
    /// unchanged unit (replaced freely) from one an administrator edited (kept unless <c>--force</c>).
    /// </summary>
    private const string HashPrefix = "# SHA-256 of the lines below (an edit makes install keep this file unless --force): ";

    public static int Run(ParsedArgs args, TextWriter output)
    {
        var root = args.Get("root");
        if (root is not null && root.Trim().Length == 0) throw new UsageException("--root: give a directory (the value is empty)");
        var binary = Environment.ProcessPath is { } p && Path.GetFileName(p) == "edgeml-agent" ? p : Path.Combine(AppContext.BaseDirectory, "edgeml-agent");
        var binDir = Path.GetDirectoryName(Path.GetFullPath(binary))!;
        if (root is null)
        {
            if (!Environment.IsPrivilegedProcess) throw new UnauthorizedAccessException("install needs root (it writes /etc and creates the user edgeml): run it with sudo");
            if (!Directory.Exists("/run/systemd/system"))
            {
                throw new IOException("systemd is not running on this machine (no /run/systemd/system): start the agent from your init system with "
                    + $"`{binary} run --config /etc/edgeml/agent.json`");
            }
        }

        var target = Path.GetFullPath(root ?? "/");
        if (root is not null && !Directory.Exists(target)) throw new ConfigurationException("--root", $"'{root}' is not a directory");
        if (File.Exists(Path.Combine(target, "usr/lib/systemd/system/edgeml-agent.service")) || File.Exists(Path.Combine(target, "lib/systemd/system/edgeml-agent.service")))
        {
            throw new IOException("the edgeml-agent package is installed: its unit already runs the agent (`apt remove edgeml-agent` first to use install instead)");
        }

        return args.Has("uninstall") ? Uninstall(target, root is null, output) : Install(target, binDir, root is null, !args.Has("no-start"), args.Has("force"), output);
    }

    private static int Install(string root, string binDir, bool live, bool start, bool force, TextWriter output)
    {
        foreach (var hidden in new[] { "/home", "/root", "/run/user" })
        {
            if (binDir == hidden || binDir.StartsWith(hidden + "/", StringComparison.Ordinal))
            {
                throw new IOException($"the agent lies in {binDir}, which the unit's ProtectHome=yes hides from the service: copy the folder to /opt/edgeml-agent and run install from there");
            }
        }

        if (!File.Exists(Path.Combine(binDir, "libonnxruntime.so")))
        {
            output.WriteLine($"note: no libonnxruntime.so in {binDir}; set Agent:Inference:OnnxRuntimeLibrary in {Path.Combine(root, ConfigPath)}");
        }

        var unit = Unit(Resource("edgeml-agent.service").Replace(PackageDirectory, binDir, StringComparison.Ordinal));
        var unitFile = Path.Combine(root, UnitPath);
        if (File.Exists(unitFile) && File.ReadAllText(unitFile) is var existing && existing != unit && !force)
        {
            // Someone else's unit, or ours edited since: replacing it would lose their changes without a word.
            throw new IOException(IsOurs(existing)
                ? $"{unitFile} was edited since `edgeml-agent install` wrote it: kept (move your changes to a drop-in, `systemctl edit edgeml-agent`, or run install --force to replace it)"
                : $"{unitFile} was not written by `edgeml-agent install`: kept (run install --force to replace it)");
        }

        Write(unitFile, unit, output, overwrite: true);
        var configFile = Path.Combine(root, ConfigPath);
        Write(configFile, Config(binDir), output, overwrite: false);

        if (!live)
        {
            output.WriteLine("--root: no user created, systemd not told (run install without --root on the machine itself)");
            return 0;
        }

        EnsureUser(output);
        Exec(output, "systemctl", "daemon-reload");
        Exec(output, "systemctl", start ? ["enable", "--now", "edgeml-agent.service"] : ["enable", "edgeml-agent.service"]);
        output.WriteLine(start
            ? "edgeml-agent.service enabled and started: `systemctl status edgeml-agent`, `journalctl -u edgeml-agent -f`"
            : "edgeml-agent.service enabled; start it with `systemctl start edgeml-agent`");
        return 0;
    }

    private static int Uninstall(string root, bool live, TextWriter output)
    {
        var unitFile = Path.Combine(root, UnitPath);
        if (File.Exists(unitFile) && File.ReadAllText(unitFile) is var unitText && !IsIntact(unitText))
        {
            // The same rule as install's: a unit we did not write, or ours edited since, is the administrator's.
            throw new IOException(IsOurs(unitText)
                ? $"{unitFile} was edited since `edgeml-agent install` wrote it: left as it is (remove it yourself, or run install --force first)"
                : $"{unitFile} was not written by `edgeml-agent install`: left as it is");
        }

        if (live && File.Exists(unitFile)) Exec(output, "systemctl", "disable", "--now", "edgeml-agent.service");
        if (File.Exists(unitFile))
        {
            File.Delete(unitFile);
            output.WriteLine($"removed {unitFile}");
        }
        else
        {
            output.WriteLine($"{unitFile}: not there (nothing to remove)");
        }

        var configFile = Path.Combine(root, ConfigPath);
        if (File.Exists(configFile))
        {
            // Only the file as install wrote it (for any folder) goes; edits are the operator's.
            var text = File.ReadAllText(configFile);
            var original = Config(ModelFolder(text) ?? "");
            if (text == original)
            {
                File.Delete(configFile);
                output.WriteLine($"removed {configFile} (unchanged)");
            }
            else
            {
                output.WriteLine($"kept {configFile} (changed since install)");
            }
        }

        if (live) Exec(output, "systemctl", "daemon-reload");
        var data = Path.Combine(root, "var/lib/edgeml");
        if (live) output.WriteLine($"kept {data} (outbox, identity, model slots) and the user edgeml: remove them yourself if they should go");
        else if (Directory.Exists(data)) output.WriteLine($"kept {data} (outbox, identity, model slots): remove it yourself if it should go");
        return 0;
    }

    /// <summary>The unit as install writes it: the marker, the hash line, then <paramref name="body"/>.</summary>
    private static string Unit(string body) => $"{Marker}\n{HashPrefix}{Sha256(body)}\n{body}";

    /// <summary>Whether a unit file is as install wrote it: its marker, then its SHA-256 line matching the rest.</summary>
    private static bool IsIntact(string text)
    {
        if (!IsOurs(text)) return false;
        var rest = text[(Marker.Length + 1)..];
        var newline = rest.IndexOf('\n', StringComparison.Ordinal);
        return newline > 0 && rest.StartsWith(HashPrefix, StringComparison.Ordinal)
            && rest[HashPrefix.Length..newline] == Sha256(rest[(newline + 1)..]);
    }

    /// <summary>Whether a unit file starts with install's marker (written by install, edited or not).</summary>
    private static bool IsOurs(string text) => text.StartsWith(Marker + "\n", StringComparison.Ordinal);

    private static string Sha256(string text) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text)));

    /// <summary>The package's configuration with the bundled models' folder at <paramref name="binDir"/>.</summary>
    private static string Config(string binDir) => Resource("agent.json").Replace(PackageDirectory + "/", binDir + "/", StringComparison.Ordinal);

    private static string? ModelFolder(string config)
    {
        const string key = "\"Model\": \"";
        var i = config.IndexOf(key, StringComparison.Ordinal);
        if (i < 0) return null;
        var end = config.IndexOf("/models/", i, StringComparison.Ordinal);
        return end < 0 ? null : config[(i + key.Length)..end];
    }

    private static void Write(string path, string text, TextWriter output, bool overwrite)
    {
        if (File.Exists(path))
        {
            if (File.ReadAllText(path) == text)
            {
                output.WriteLine($"{path}: unchanged");
                return;
            }

            if (!overwrite)
            {
                output.WriteLine($"{path}: kept (yours)");
                return;
            }
        }

        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temp = path + ".new";
        File.WriteAllText(temp, text);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        File.Move(temp, path, overwrite: true);
        output.WriteLine($"wrote {path}");
    }

    private static void EnsureUser(TextWriter output)
    {
        if (Exec(output, "getent", check: false, "passwd", "edgeml") != 0)
        {
            Exec(output, "useradd", "--system", "--user-group", "--home-dir", "/var/lib/edgeml", "--no-create-home", "--shell", "/usr/sbin/nologin",
                "--comment", "EdgeMl agent", "edgeml");
        }

        foreach (var group in new[] { "gpio", "i2c", "spi" })
        {
            if (Exec(output, "getent", check: false, "group", group) == 0) Exec(output, "usermod", "--append", "--groups", group, "edgeml");
        }
    }

    private static int Exec(TextWriter output, string program, params string[] args) => Exec(output, program, check: true, args);

    private static int Exec(TextWriter output, string program, bool check, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new IOException($"cannot run {program}: {e.Message}");
        }

        using (p)
        {
            var stderr = p.StandardError.ReadToEndAsync();
            p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            if (check && p.ExitCode != 0)
            {
                throw new IOException($"{program} {string.Join(' ', args)} failed (exit {p.ExitCode}): {stderr.Result.Trim()}");
            }

            if (check) output.WriteLine($"ran {program} {string.Join(' ', args)}");
            return p.ExitCode;
        }
    }

    private static string Resource(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"resource {name} is missing from the build");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
