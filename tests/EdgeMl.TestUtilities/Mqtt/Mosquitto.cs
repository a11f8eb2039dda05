using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace EdgeMl.TestUtilities.Mqtt;

/// <summary>Debian's mosquitto broker on a free loopback port, as an external broker for tests. Can be stopped and started again on the same port.</summary>
public sealed class Mosquitto : IDisposable
{
    private readonly string _config;
    private readonly bool _tls;
    private Process? _process;

    /// <param name="persistDirectory">Keep sessions and queued messages on disk there (as a production broker does), so they survive a restart.</param>
    /// <param name="listenerOptions">Lines for the listener, e.g. TLS: <c>cafile …</c>, <c>certfile …</c>, <c>require_certificate true</c>.</param>
    /// <param name="passwords">Users and passwords (a mosquitto_passwd file is written); given, anonymous clients are refused.</param>
    /// <param name="dynsecAdminPassword">
    /// Load Mosquitto's dynamic-security plugin with a fresh config (<c>mosquitto_ctrl dynsec init</c>) whose admin is
    /// <c>admin</c> with this password; anonymous clients are refused.
    /// </param>
    public Mosquitto(int? port = null, string? persistDirectory = null, string? listenerOptions = null, IReadOnlyDictionary<string, string>? passwords = null,
        string? dynsecAdminPassword = null)
    {
        Port = port ?? FreePort();
        _config = Path.Combine(Path.GetTempPath(), $"edgeml-mosquitto-{Port}.conf");
        if (persistDirectory is not null && !OperatingSystem.IsWindows())
        {
            // Started as root, mosquitto drops to its own user before it writes the persistence file.
            File.SetUnixFileMode(persistDirectory, (UnixFileMode)0x1FF);
        }

        var persistence = persistDirectory is null ? "persistence false\n" : $"persistence true\npersistence_location {persistDirectory.TrimEnd('/')}/\nautosave_interval 1\n";
        _tls = listenerOptions?.Contains("certfile", StringComparison.Ordinal) == true;
        var access = "allow_anonymous true\n";
        if (passwords is not null)
        {
            var file = Path.Combine(Path.GetTempPath(), $"edgeml-mosquitto-{Port}.passwd");
            var create = true;
            foreach (var (user, password) in passwords)
            {
                using var p = Process.Start("/usr/bin/mosquitto_passwd", create ? ["-c", "-b", file, user, password] : ["-b", file, user, password])!;
                p.WaitForExit();
                create = false;
            }

            // mosquitto reads it after dropping to its own user.
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            access = $"allow_anonymous false\npassword_file {file}\n";
        }

        if (dynsecAdminPassword is not null)
        {
            // mosquitto drops to its own user and rewrites the file on every change: a directory it may write in.
            _dynsecDirectory = Directory.CreateTempSubdirectory("edgeml-dynsec-").FullName;
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(_dynsecDirectory, (UnixFileMode)0x1FF);
            var file = Path.Combine(_dynsecDirectory, "dynamic-security.json");
            using (var p = Process.Start(new ProcessStartInfo("/usr/bin/mosquitto_ctrl", ["dynsec", "init", file, "admin", dynsecAdminPassword]) { RedirectStandardOutput = true })!)
            {
                p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                if (p.ExitCode != 0) throw new InvalidOperationException($"mosquitto_ctrl dynsec init exited with {p.ExitCode}");
            }

            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(file, (UnixFileMode)0x1B6);
            access = $"allow_anonymous false\nplugin {DynsecPlugin}\nplugin_opt_config_file {file}\n";
        }

        File.WriteAllText(_config, $"listener {Port} 127.0.0.1\n{listenerOptions}\n{access}{persistence}");
    }

    private readonly string? _dynsecDirectory;

    /// <summary>Where Debian's mosquitto keeps its dynamic-security plugin.</summary>
    public const string DynsecPlugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";

    public int Port { get; }

    /// <summary>The broker's process id while it runs, else 0.</summary>
    public int Pid => _process is { HasExited: false } p ? p.Id : 0;

    public string Url => $"{(_tls ? "mqtts" : "mqtt")}://127.0.0.1:{Port}";

    public static bool Available => File.Exists("/usr/sbin/mosquitto") && File.Exists("/usr/bin/mosquitto_sub");

    public Mosquitto Start()
    {
        _process = Process.Start(new ProcessStartInfo("/usr/sbin/mosquitto", ["-c", _config]) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false })!;
        // Its log (a line per connection) is read and dropped: a full pipe would stop the broker (seen with 500 clients).
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = Environment.TickCount64 + 10_000;
        while (!Listening())
        {
            if (_process.HasExited || Environment.TickCount64 > deadline) throw new InvalidOperationException($"mosquitto did not start on port {Port}");
            Thread.Sleep(20);
        }

        return this;
    }

    /// <summary>SIGTERM, as <c>systemctl restart</c> does: mosquitto writes its persistence file and exits.</summary>
    public void StopGracefully()
    {
        if (_process is { HasExited: false })
        {
            using var kill = Process.Start("/bin/kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            kill.WaitForExit();
            if (!_process.WaitForExit(10_000)) _process.Kill();
        }

        _process?.Dispose();
        _process = null;
    }

    public void Stop()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill();
            _process.WaitForExit();
        }

        _process?.Dispose();
        _process = null;
    }

    private bool Listening()
    {
        try
        {
            using var c = new TcpClient();
            c.Connect(IPAddress.Loopback, Port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public static int FreePort() => EdgeMl.FleetSim.Loopback.FreePort();

    public void Dispose()
    {
        Stop();
        File.Delete(_config);
        if (_dynsecDirectory is not null) Directory.Delete(_dynsecDirectory, recursive: true);
    }
}

/// <summary><c>mosquitto_sub</c> as a third-party client: every message as "topic payload", collected as it arrives.</summary>
public sealed class MosquittoSub : IDisposable
{
    private readonly Process _process;
    private readonly Lock _gate = new();
    private readonly List<(string Topic, string Payload)> _messages = [];

    /// <param name="extra">More mosquitto_sub options, e.g. TLS: <c>--cafile</c>, <c>--cert</c>, <c>--key</c>.</param>
    public MosquittoSub(int port, string topic, string clientId, string[]? extra = null)
    {
        _process = Process.Start(new ProcessStartInfo("/usr/bin/mosquitto_sub",
            ["-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-t", topic, "-v", "-q", "1", "-i", clientId, .. extra ?? []])
        { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false })!;
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not { Length: > 0 } line) return;
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            lock (_gate)
            {
                // -v prints "topic payload"; a payload with line breaks continues on lines of its own.
                if (space > 0 && line.StartsWith("edgeml/", StringComparison.Ordinal)) _messages.Add((line[..space], line[(space + 1)..]));
                else if (_messages.Count > 0) _messages[^1] = (_messages[^1].Topic, _messages[^1].Payload + "\n" + line);
            }
        };
        _process.BeginOutputReadLine();
    }

    public List<(string Topic, string Payload)> Messages
    {
        get { lock (_gate) return [.. _messages]; }
    }

    /// <summary>Waits until the messages received satisfy <paramref name="condition"/>; fails after the timeout.</summary>
    public void WaitUntil(Func<List<(string Topic, string Payload)>, bool> condition, string what, int timeoutMs = 20_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!condition(Messages))
        {
            if (Environment.TickCount64 > deadline) throw new TimeoutException($"timed out waiting for: {what} ({Messages.Count} messages so far)");
            Thread.Sleep(20);
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill();
        _process.WaitForExit();
        _process.Dispose();
    }
}
