using System.Device.Gpio;
using EdgeMl.Agent.Actions;
using EdgeMl.Agent.Configuration;
using EdgeMl.Agent.Gpio;
using System.Text.Json;
using EdgeMl.Agent.Inference;
using EdgeMl.Agent.Outbox;
using EdgeMl.Protocol.Json;
using EdgeMl.Protocol.Wire;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Agent.Sensors;
using EdgeMl.Protocol.Packages;
using Microsoft.Extensions.Logging;

namespace EdgeMl.Agent.Hosting;

/// <summary>
/// Everything one running agent holds, built from <see cref="AgentOptions"/>: the model, the sensor,
/// GPIO and its actions, the result log and the pipeline. Used by the service and by <c>run --model</c>.
/// Disposes what it built, also when building fails halfway.
/// </summary>
public sealed partial class AgentRuntime : IDisposable
{
    private readonly List<IDisposable> _owned = [];
    private readonly ILogger _logger;
    private readonly AgentOptions _options;
    private readonly TimeProvider _time;
    private readonly Platform.SystemProbe _system;
    private readonly ModelManifest _manifest = null!;

    private readonly Updates.ModelSlots? _slots;
    private readonly CancellationTokenSource _restart = new();
    private string? _restartReason;

    public AgentRuntime(AgentOptions options, ILoggerFactory loggers, TimeProvider? time = null,
        ISensorSource? sensor = null, GpioController? gpio = null, Stream? resultStream = null, Updates.ModelSlots? slots = null)
    {
        _options = options;
        _slots = slots;
        _time = time ?? TimeProvider.System;
        _logger = loggers.CreateLogger("EdgeMl.Agent");
        _system = new Platform.SystemProbe(options.DataDirectory);
        try
        {
            var package = ModelPackage.Open(options.Model);
            _manifest = package.Manifest;
            if (Inference.PackageTrust.Enforce(package, options.TrustedKeys, $"{AgentOptions.Section}:TrustedKeys") is { } trusted)
            {
                LogTrusted(_logger, package.Manifest.Name, package.Manifest.Version, trusted.KeyId ?? "?");
            }
            else
            {
                LogUntrusted(_logger, package.Manifest.Name, package.Manifest.Version);
            }
            Runner = Own(ModelRunner.Load(package, options.Inference, _logger));
            Sensor = sensor ?? Own(SensorFactory.Create(options.Sensor, options.Seed, $"{AgentOptions.Section}:Sensor"));
            Health = new AgentHealth(_time);

            var sinks = new List<IPredictionSink>();
            if (options.Actions.Count > 0)
            {
                if (options.Actions.Any(a => a.Pin >= 0)) Gpio = gpio ?? Own(GpioControllers.Open(options.Gpio));
                Actions = Own(new GpioActions(Gpio, options.Actions, _time, loggers.CreateLogger("EdgeMl.Agent.Actions")));
                sinks.Add(Actions);
            }

            var manifest = package.Manifest;
            if (!string.IsNullOrWhiteSpace(options.DataDirectory))
            {
                // First sink: a record is stored before anything acts on it or prints it.
                Outbox = Own(new DeviceOutbox(DeviceOutboxPath(options.DataDirectory), options.Outbox, _time, logger: _logger));
                sinks.Insert(0, Own(new OutboxSink(Outbox, manifest.Name, manifest.Version)));
            }

            if (options.ResultFormat == "text" && resultStream is null)
            {
                sinks.Add(new ConsoleResultView(Console.Out));
            }
            else
            {
                var stream = resultStream ?? (options.ResultLog == "-" ? Console.OpenStandardOutput() : OpenLog(options.ResultLog));
                sinks.Add(Own(new ResultLog(stream, ownsStream: resultStream is null, manifest.Name, manifest.Version, Health)));
            }

            var alerts = Outbox is null ? null : new AlertRecorder(Outbox, manifest.Name, manifest.Version);
            if (Outbox?.MovedAside is { } aside)
            {
                LogOutboxMovedAside(_logger, aside);
                alerts!.Store($"the outbox was not readable and was moved aside to {aside}; a fresh one was started", _time.GetUtcNow());
            }

            if (Outbox is not null && options.Drift.Enabled && manifest.Baseline is not null)
            {
                Drift = Own(new Drift.DriftMonitor(manifest, Sensor.Channels, options.Drift, _time, Outbox, alerts, e => Fail("drift", e)));
                sinks.Insert(1, Drift); // right after the outbox: sketches see what was stored
            }

            Pipeline = new AgentPipeline(Sensor, new Predictor(Runner), options.Pipeline, Health, sinks, _time, _logger) { Samples = Drift };
            if (alerts is not null)
            {
                if (Actions is not null) Actions.RuleSwitched += alerts.Rule;
                Pipeline.SensorStateChanged += alerts.Sensor;
            }
            LogStarted(_logger, manifest.Name, manifest.Version, Runner.Provider, Sensor.Name);
            if (options.ReleaseStartupPages)
            {
                Memory.StartupPages.Release();
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public ModelRunner Runner { get; } = null!;
    public ISensorSource Sensor { get; } = null!;
    public AgentHealth Health { get; } = null!;

    /// <summary>Drift sketches of inputs and outputs (null without a data directory or a baseline in the package).</summary>
    public Drift.DriftMonitor? Drift { get; }
    public GpioController? Gpio { get; }
    public GpioActions? Actions { get; }
    public AgentPipeline Pipeline { get; } = null!;
    public DeviceOutbox? Outbox { get; }

    /// <summary>The running model's name and version (from its manifest).</summary>
    public string ModelName => _manifest.Name;

    /// <inheritdoc cref="ModelName"/>
    public string ModelVersion => _manifest.Version;

    /// <summary>The uplink to the hub while <see cref="RunAsync"/> runs with one (null before, after, and without a hub).</summary>
    public Sync.Uplink? Uplink { get; private set; }

    public static string DeviceOutboxPath(string dataDirectory) => Path.Combine(dataDirectory, "agent.db");

    /// <summary>Why the runtime asked to be restarted (a model was activated or rolled back), or null.</summary>
    public string? RestartReason => _restartReason;

    /// <summary>Stops the run so that the host starts again on the slot now marked active.</summary>
    public void Restart(string reason)
    {
        _restartReason ??= reason;
        LogRestart(_logger, reason);
        _restart.Cancel();
    }

    /// <summary>Runs until stopped; true when it stopped to restart on another model (<see cref="RestartReason"/>).</summary>
    public async Task<bool> RunAsync(CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _restart.Token);
        var health = _options.HealthIntervalSeconds > 0 ? Guard("health", () => ReportHealthAsync(TimeSpan.FromSeconds(_options.HealthIntervalSeconds), stop.Token), stop.Token) : Task.CompletedTask;
        using var uplinkStop = new CancellationTokenSource();
        using var uplink = Outbox is not null && _options.Hub.Broker.Length > 0
            ? new Sync.Uplink(Outbox, _options.Hub, _time, _logger)
            : null;
        Uplink = uplink;
        var context = new Updates.UpdateContext(_manifest, _options.Inference, Pipeline, Health, Restart);
        using var updater = uplink is null || _slots is null ? null
            : new Updates.ModelUpdater(_options.DataDirectory, _options.Hub, _options.TrustedKeys, _slots, context, uplink.ReportAsync, _time, _logger)
            {
                CrashPoint = Updates.ModelSlots.CrashPointFromEnvironment(),
            };
        if (updater is not null)
        {
            uplink!.DesiredReceived += updater.OnDesired;
            uplink.DesiredRefused += updater.OnDesiredRefused;
            await updater.ReportStartAsync().ConfigureAwait(false);
        }

        var watching = Task.CompletedTask;
        if (_slots is not null)
        {
            var slots = _slots;
            if (slots.InTrial)
            {
                var watch = new Updates.ActivationWatch(slots, Health, _time, _logger);
                watching = Guard("activation watch", async () =>
                {
                    var reason = await watch.RunAsync(() => updater?.ReportConfirmedAsync(slots.State.Terms?.Rollout) ?? Task.CompletedTask, stop.Token).ConfigureAwait(false);
                    if (reason is null) return;
                    LogWatchFailed(_logger, _manifest.Name, _manifest.Version, reason);
                    if (slots.RollBack(reason, bad: true, _time.GetUtcNow())) Restart($"rolled back: {reason}");
                }, stop.Token);
            }
            else
            {
                Pipeline.Healthy += slots.Healthy;
            }
        }

        var delivering = uplink is null ? Task.CompletedTask : Guard("uplink", () => uplink.RunAsync(uplinkStop.Token), uplinkStop.Token);
        // Once settled (connected, first drift windows and health reports out), the one-time code paths of those go too.
        var settling = _options.ReleaseStartupPages
            ? Guard("memory", async () =>
            {
                await Task.Delay(SettledAfter, _time, stop.Token).ConfigureAwait(false);
                Memory.StartupPages.Release();
            }, stop.Token)
            : Task.CompletedTask;
        try
        {
            await Pipeline.RunAsync(stop.Token).ConfigureAwait(false);
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await health.ConfigureAwait(false);
            await watching.ConfigureAwait(false);
            await settling.ConfigureAwait(false);
            try
            {
                Drift?.Flush(); // the last, partial window goes out with the rest
            }
            catch (Exception e)
            {
                Fail("drift", e);
            }

            if (uplink is not null)
            {
                // Give the uplink a moment to deliver what is left (also on a stop: the last records are usually in
                // flight); what it cannot deliver stays in the outbox for the next start.
                var deadline = _time.GetTimestamp();
                var grace = cancellationToken.IsCancellationRequested ? TimeSpan.FromSeconds(2) : TimeSpan.FromSeconds(5);
                while (_failure is null && Outbox!.Stats().Depth.Values.Sum() > 0 && _time.GetElapsedTime(deadline) < grace)
                {
                    await Task.Delay(50, CancellationToken.None).ConfigureAwait(false);
                }

                await uplinkStop.CancelAsync().ConfigureAwait(false);
                await delivering.ConfigureAwait(false);
                // Said, not left to be guessed: a run that ends (--count, a replay, a stop) with records the broker has not
                // acknowledged looks like lost data to whoever counts what reached the hub; they are sent at the next start.
                if (_failure is null) LogUndelivered(Outbox!.Stats().Depth);
            }
        }

        if (_failure is not null) throw _failure;
        return _restartReason is not null && !cancellationToken.IsCancellationRequested;
    }

    private AgentStoppedException? _failure;

    /// <summary>When start-up pages are handed back a second time (see <see cref="Memory.StartupPages"/>).</summary>
    private static readonly TimeSpan SettledAfter = TimeSpan.FromSeconds(45);

    /// <summary>
    /// A background stage failed beyond what it handles itself: the whole run stops and <see cref="RunAsync"/> throws
    /// <see cref="AgentStoppedException"/> naming it (the command exits non-zero; a supervisor restarts the agent).
    /// </summary>
    private void Fail(string stage, Exception e)
    {
        if (Interlocked.CompareExchange(ref _failure, new AgentStoppedException(stage, e), null) is not null) return;
        LogStageFailed(_logger, _failure.Message);
        try
        {
            _restart.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The run is over already (a timer fired during disposal).
        }
    }

    /// <summary>Runs a background stage so that no exception escapes it unobserved: it ends the run through <see cref="Fail"/>.</summary>
    private Task Guard(string stage, Func<Task> body, CancellationToken stopping) => Task.Run(async () =>
    {
        try
        {
            await body().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            Fail(stage, e);
        }
    }, CancellationToken.None);

    private async Task ReportHealthAsync(TimeSpan every, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(every, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                var h = Health.Snapshot();
                h.System = _system.Read();
                if (Outbox is not null)
                {
                    Outbox.Expire();
                    Outbox.Shrink(); // at most every 10 minutes, and only when the file is mostly empty
                    h.Outbox = Outbox.Health();
                    var json = JsonSerializer.SerializeToUtf8Bytes(h, ProtocolJsonContext.Default.HealthReport);
                    SaveHealth(json);
                    Outbox.Append(RecordClass.Health, json);
                }

                var m = h.Model!;
                var sensor = h.Sensors[0];
                LogHealth(_logger, m.Predictions, m.InferencesPerSecond, m.LatencyP50Ms, m.LatencyP99Ms, m.WindowsDropped,
                    sensor.Name, sensor.State, sensor.Errors, sensor.LastError ?? "none");
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>The latest health report as a file beside the outbox, for <c>edgeml-agent status</c> on site, without a network.</summary>
    /// <remarks>A full disk keeps the previous file (the report goes to the outbox's counters and the log instead).</remarks>
    private void SaveHealth(byte[] json)
    {
        var path = HealthPath(_options.DataDirectory);
        try
        {
            File.WriteAllBytes(path + ".tmp", json);
            File.Move(path + ".tmp", path, overwrite: true);
        }
        catch (IOException e) when (Platform.DiskSpace.IsFull(e))
        {
            LogHealthNotSaved(_logger, path, e.Message);
            try
            {
                File.Delete(path + ".tmp");
            }
            catch (IOException)
            {
            }
        }
    }

    public static string HealthPath(string dataDirectory) => Path.Combine(dataDirectory, "health.json");

    private static FileStream OpenLog(string path)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        // Unbuffered: each line is one write, so a full disk drops whole lines (ResultLog) and none is left half in a buffer.
        return new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read, bufferSize: 0);
    }

    private T Own<T>(T disposable) where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    public void Dispose()
    {
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            _owned[i].Dispose();
        }

        _owned.Clear();
        _restart.Dispose();
    }

    private void LogUndelivered(IReadOnlyDictionary<RecordClass, long> depth)
    {
        var left = depth.Values.Sum();
        if (left == 0) return;
        LogUndeliveredCore(_logger, left, _options.Hub.Broker,
            string.Join(", ", depth.Where(kv => kv.Value > 0).Select(kv => $"{kv.Value} {DeviceOutbox.Name(kv.Key)}")));
    }

    [LoggerMessage(EventId = 1014, Level = LogLevel.Warning,
        Message = "{Count} record(s) not acknowledged by {Broker} yet ({Classes}): kept in the outbox and sent at the next start (edgeml-agent status shows them)")]
    private static partial void LogUndeliveredCore(ILogger logger, long count, string broker, string classes);

    [LoggerMessage(EventId = 1009, Level = LogLevel.Critical, Message = "Stopping the agent: {Reason}")]
    private static partial void LogStageFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 1011, Level = LogLevel.Warning, Message = "Health report not saved to {Path}: {Error}")]
    private static partial void LogHealthNotSaved(ILogger logger, string path, string error);

    [LoggerMessage(EventId = 1012, Level = LogLevel.Error, Message = "The outbox was not readable and was moved aside to {Aside}; a fresh one was started")]
    private static partial void LogOutboxMovedAside(ILogger logger, string aside);

    [LoggerMessage(EventId = 1004, Level = LogLevel.Warning, Message = "Restarting the runtime: {Reason}")]
    private static partial void LogRestart(ILogger logger, string reason);

    [LoggerMessage(EventId = 1005, Level = LogLevel.Error, Message = "{Model}@{Version} failed its watch period, rolling back: {Reason}")]
    private static partial void LogWatchFailed(ILogger logger, string model, string version, string reason);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Information, Message = "Package {Model}@{Version} is signed by trusted key {KeyId}")]
    private static partial void LogTrusted(ILogger logger, string model, string version, string keyId);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Warning, Message = "Package {Model}@{Version} runs without a signature check here: no Agent:TrustedKeys configured (a local --model is run as given; packages that arrive over the air are always checked)")]
    private static partial void LogUntrusted(ILogger logger, string model, string version);

    [LoggerMessage(EventId = 1000, Level = LogLevel.Information, Message = "Running {Model}@{Version} on {Provider} with sensor {Sensor}")]
    private static partial void LogStarted(ILogger logger, string model, string version, string provider, string sensor);

    [LoggerMessage(EventId = 1001, Level = LogLevel.Information,
        Message = "Health: {Predictions} predictions ({Rate:0.0}/s), latency p50 {P50:0.000} ms p99 {P99:0.000} ms, {Dropped} windows dropped; sensor {Sensor} {State}, {Errors} errors (last: {LastError})")]
    private static partial void LogHealth(ILogger logger, long predictions, double rate, double p50, double p99, long dropped, string sensor, string state, long errors, string lastError);
}
