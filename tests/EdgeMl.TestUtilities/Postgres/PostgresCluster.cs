using System.Diagnostics;
using System.Globalization;
using Npgsql;

namespace EdgeMl.TestUtilities.Postgres;

/// <summary>
/// A throwaway PostgreSQL cluster of Debian's own server (<c>initdb</c> + <c>pg_ctl</c>) in a temp folder: it listens
/// on a unix socket in that folder only (no TCP), with trust authentication for user <c>postgres</c>. Started as the
/// <c>postgres</c> user when the tests run as root (initdb refuses root). <see cref="Dispose"/> stops it
/// (<c>pg_ctl stop -m immediate</c>, then a kill of the postmaster) and deletes the folder; a process exit without
/// Dispose does the same. Each test takes a fresh database with <see cref="CreateDatabase"/>.
/// </summary>
public sealed class PostgresCluster : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "edgeml-pg-" + Guid.NewGuid().ToString("N")[..10]);
    private int _databases;
    private bool _disposed;

    /// <summary>The newest installed server's programs (Debian: /usr/lib/postgresql/N/bin), or null when none is installed.</summary>
    public static string? BinDirectory { get; } = Directory.Exists("/usr/lib/postgresql")
        ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(b => File.Exists(Path.Combine(b, "initdb")))
            .OrderByDescending(b => int.TryParse(Path.GetFileName(Path.GetDirectoryName(b)), out var v) ? v : 0).FirstOrDefault()
        : null;

    /// <summary>Whether a server is installed (Debian's <c>postgresql</c> package; <c>./build.sh test</c> installs it).</summary>
    public static bool Available => BinDirectory is not null;

    private string Data => Path.Combine(_root, "data");

    /// <summary>The server's main process (its first line of <c>postmaster.pid</c>); 0 when not running.</summary>
    public int PostmasterPid
    {
        get
        {
            var pidFile = Path.Combine(Data, "postmaster.pid");
            return File.Exists(pidFile) && int.TryParse(File.ReadLines(pidFile).FirstOrDefault(), out var id) ? id : 0;
        }
    }

    /// <summary>The port: with a unix socket it only names the socket file (<c>.s.PGSQL.PORT</c>).</summary>
    public int Port { get; } = EdgeMl.FleetSim.Loopback.FreePort();

    /// <param name="durable">
    /// Keep fsync on (as production does): for benchmarks. Tests run with <c>fsync=off</c>, which loses nothing while
    /// the machine stays up and keeps a test's many commits cheap.
    /// </param>
    /// <param name="settings">More server settings, <c>-c name=value</c> each (e.g. <c>-c shared_buffers=1GB</c>).</param>
    public PostgresCluster(bool durable = false, string settings = "")
    {
        if (BinDirectory is null) throw new InvalidOperationException("PostgreSQL is not installed (apt-get install postgresql)");
        Directory.CreateDirectory(_root);
        var asPostgres = Environment.UserName == "root";
        if (asPostgres) Run("/bin/chown", "postgres:postgres", _root);
        AppDomain.CurrentDomain.ProcessExit += OnExit;
        try
        {
            Run(asPostgres, Path.Combine(BinDirectory, "initdb"), "-D", Data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync");
            _options = $"-k {_root} -p {Port.ToString(CultureInfo.InvariantCulture)} -c listen_addresses='' {(durable ? "" : "-c fsync=off ")}-c max_connections=200 {settings}";
            Start();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private readonly string _options = "";

    /// <summary>Starts the server (again, after <see cref="Stop"/>) and waits until it takes connections.</summary>
    public void Start() =>
        Run(Environment.UserName == "root", Path.Combine(BinDirectory!, "pg_ctl"), "-D", Data, "-l", Path.Combine(_root, "log"), "-w", "-t", "60", "start", "-o", _options);

    /// <summary>Stops the server as <c>systemctl stop postgresql</c> does (<c>pg_ctl stop -m fast</c>: sessions ended, a clean shutdown).</summary>
    public void Stop() => Run(Environment.UserName == "root", Path.Combine(BinDirectory!, "pg_ctl"), "-D", Data, "-m", "fast", "-w", "-t", "60", "stop");

    /// <summary>The connection string of <paramref name="database"/> (Npgsql: Host is the socket folder).</summary>
    public string ConnectionString(string database = "postgres") =>
        $"Host={_root};Port={Port.ToString(CultureInfo.InvariantCulture)};Username=postgres;Database={database};Pooling=true";

    /// <summary>Creates an empty database of its own and returns its connection string.</summary>
    public string CreateDatabase()
    {
        var name = $"test_{Interlocked.Increment(ref _databases).ToString(CultureInfo.InvariantCulture)}";
        using var c = new NpgsqlConnection(ConnectionString());
        c.Open();
        using var cmd = new NpgsqlCommand($"CREATE DATABASE {name}", c);
        cmd.ExecuteNonQuery();
        return ConnectionString(name);
    }

    private void Run(bool asPostgres, string program, params string[] args) =>
        Run(asPostgres ? "/usr/sbin/runuser" : program, asPostgres ? ["-u", "postgres", "--", program, .. args] : args);

    private static void Run(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"{program} did not finish in 120 s");
        }

        if (p.ExitCode != 0) throw new InvalidOperationException($"{program} {string.Join(' ', args)} failed ({p.ExitCode}): {stderr.Result.Trim()} {stdout.Result.Trim()}");
    }

    private void OnExit(object? sender, EventArgs e) => Dispose();

    /// <summary>Stops the server at once and deletes its folder; safe to call twice.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        AppDomain.CurrentDomain.ProcessExit -= OnExit;
        NpgsqlConnection.ClearAllPools();
        var pidFile = Path.Combine(Data, "postmaster.pid");
        var pid = File.Exists(pidFile) && int.TryParse(File.ReadLines(pidFile).FirstOrDefault(), out var id) ? id : 0;
        try
        {
            if (pid > 0) Run(Environment.UserName == "root", Path.Combine(BinDirectory!, "pg_ctl"), "-D", Data, "-m", "immediate", "-w", "stop");
        }
        catch (InvalidOperationException)
        {
            // Not running, or pg_ctl failed: the kill below makes sure.
        }

        if (pid > 0)
        {
            try
            {
                // Only if that pid is still a postgres: after a clean stop it may already belong to another program.
                using var postmaster = Process.GetProcessById(pid);
                if (postmaster.ProcessName == "postgres")
                {
                    postmaster.Kill(entireProcessTree: true);
                    postmaster.WaitForExit(10_000);
                }
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // Already gone.
            }
        }

        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
