using System.Text.Json;
using EdgeMl.FleetHub.Broker;
using EdgeMl.FleetHub.Store;
using EdgeMl.Protocol.Json;
using EdgeMl.Protocol.Packages;
using EdgeMl.Protocol.Wire;

namespace EdgeMl.FleetHub.Rollouts;

/// <summary>
/// Drives every rollout: sends the current wave its desired state, follows what the devices report, judges the
/// gates when the wave's soak is over, activates the wave or halts the rollout and rolls the wave back, and moves to
/// the next wave. One tick a second (<c>--RolloutTickMs</c>); all state is read from and written to the store each
/// tick, so a restarted hub carries on. On start it re-publishes every device's desired state (an embedded broker's
/// retained messages do not survive a restart).
/// </summary>
public sealed partial class RolloutEngine(IHubStore store, IHubPublisher publisher, HubSettings settings, TimeProvider time, ILogger<RolloutEngine> logger, Events.HubEvents events)
    : BackgroundService
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = false };
    private readonly SemaphoreSlim _gate = new(1, 1);

    public static Rollout? Parse(string json) => JsonSerializer.Deserialize<Rollout>(json, Json);

    public Rollout? Find(string id) => store.FindRollout(id) is { } json ? Parse(json) : null;

    public List<Rollout> All() => store.RolloutJsons().Select(j => Parse(j)!).OrderBy(r => r.CreatedAt).ToList();

    /// <summary>
    /// One change of rollouts at a time: in this process (the gate) and across replicas on a shared store
    /// (<see cref="IHubStore.Exclusive"/>), so an operator's pause or abort on one replica is never overwritten by the
    /// leader's step that read the rollout before it. Disposing releases both.
    /// </summary>
    private async Task<IDisposable> EnterAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            return new Entered(_gate, await Task.Run(() => store.Exclusive("rollouts")).ConfigureAwait(false));
        }
        catch
        {
            _gate.Release();
            throw;
        }
    }

    private sealed class Entered(SemaphoreSlim gate, IDisposable shared) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) != 0) return;
            shared.Dispose();
            gate.Release();
        }
    }

    private void Save(Rollout r)
    {
        store.SaveRollout(r.Id, r.State, JsonSerializer.Serialize(r, Json));
        events.Rollout(r.Id, r.State);
    }

    private void Audit(string actor, string action, Rollout r, string details, string? device = null) =>
        store.AddAudit(new AuditEntry(time.GetUtcNow(), actor, action, $"rollout {r.Id} {r.Label}", details, device));

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Delay(TimeSpan.FromMilliseconds(300), time, stoppingToken).ConfigureAwait(false); // let the broker start
        var republished = await RepublishAsync().ConfigureAwait(false);
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(Math.Max(50, settings.RolloutTickMs)), time);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            // A store that could not be read at start (it went away just then) is read again at each tick until it answers:
            // an exception here would stop the whole hub.
            if (!republished) republished = await RepublishAsync().ConfigureAwait(false);
            try
            {
                await TickAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogTickFailed(logger, e.Message);
            }
        }
    }

    /// <summary>
    /// Publishes every desired state the store holds again, retained (the embedded broker starts without them); false when
    /// the store cannot be read (logged): the caller tries again. A publish that fails is logged and skipped.
    /// </summary>
    private async Task<bool> RepublishAsync()
    {
        List<(string Device, string Json)> states;
        try
        {
            states = store.DesiredStates();
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogRepublishUnreadable(logger, e.Message);
            return false;
        }

        foreach (var (device, json) in states)
        {
            try
            {
                await publisher.PublishAsync(Topics.StateDesired(device), System.Text.Encoding.UTF8.GetBytes(json), retain: true).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogRepublishFailed(logger, device, e.Message);
            }
        }

        return true;
    }

    /// <summary>One step of every rollout that is not finished with its devices; only on the replica that leads <c>rollouts</c> (<see cref="IHubStore.Leads"/>).</summary>
    public async Task TickAsync()
    {
        if (!store.Leads("rollouts")) return;
        var exclusive = await EnterAsync().ConfigureAwait(false);
        try
        {
            var following = All().Where(r => r.Active || r.Devices.Any(d => d.Phase == "rolling-back")).ToList();
            // Reading every device (10,000 documents with their newest health) each second held up every other request to the
            // store by a few hundred ms: only when a rollout needs them.
            if (following.Count == 0) return;
            var devices = store.Devices().ToDictionary(d => d.Id);
            foreach (var r in following)
            {
                var changed = Follow(r, devices);
                if (r.State == "running") changed |= await AdvanceAsync(r, devices).ConfigureAwait(false);
                if (changed) Save(r);
            }
        }
        finally
        {
            exclusive.Dispose();
        }
    }

    /// <summary>Updates each sent device's phase from what it last reported.</summary>
    private bool Follow(Rollout r, Dictionary<string, DeviceEntry> devices)
    {
        var changed = false;
        foreach (var d in r.Devices.Where(d => d.SentAt is not null))
        {
            if (!devices.TryGetValue(d.Id, out var entry) || entry.ReportedJson is null) continue;
            ReportedState? rep;
            try
            {
                rep = JsonSerializer.Deserialize(entry.ReportedJson, ProtocolJsonContext.Default.ReportedState);
            }
            catch (JsonException)
            {
                continue;
            }

            if (rep is null || rep.At < d.SentAt!.Value.AddSeconds(-30)) continue; // from before this rollout reached it
            string phase;
            string? reason = rep.Reason;
            if (d.Phase is "rolling-back" or "rolled-back")
            {
                if (rep.Active != d.From || d.Phase == "rolled-back") continue;
                phase = "rolled-back";
                reason = d.Reason;
            }
            else if (rep.Name == r.Model && rep.Version == r.Version)
            {
                phase = rep.Phase == "active" && rep.Active != r.Label ? d.Phase : rep.Phase;
                if (rep.Shadow is not null) d.Shadow = rep.Shadow;
                if (rep.Phase == "active" && rep.Active == r.Label && rep.Confirmed == true && !d.Confirmed)
                {
                    d.Confirmed = true;
                    changed = true;
                }
            }
            else if (rep.Phase == "rolled-back" && rep.Active != r.Label && d.Phase == "active")
            {
                phase = "rolled-back"; // the device went back by itself after activation (a report about the model it left)
            }
            else
            {
                continue;
            }

            if (phase != d.Phase || reason != d.Reason)
            {
                if (phase is "failed" or "rolled-back" && d.Phase != phase)
                {
                    Audit(d.Id, $"device.{phase}", r, reason ?? "", d.Id);
                }

                d.Phase = phase;
                d.Reason = reason;
                d.UpdatedAt = time.GetUtcNow();
                changed = true;
            }
        }

        return changed;
    }

    private async Task<bool> AdvanceAsync(Rollout r, Dictionary<string, DeviceEntry> devices)
    {
        var now = time.GetUtcNow();
        var wave = r.Devices.Where(d => d.Wave == r.Wave).ToList();
        var shadowFirst = r.SoakSeconds > 0 || r.Gates.Count > 0;
        if (r.Stage is null)
        {
            r.Stage = shadowFirst ? "shadow" : "activating";
            r.StageStarted = now;
            // The wave's start is recorded (audit line, then the rollout saved) before its devices are sent their desired
            // state: a leader that dies while sending leaves the stage saved, and the next leader sends the rest (below)
            // instead of starting the wave again. Only a death between the audit line and the save starts it twice.
            Audit("hub", "rollout.wave", r, $"wave {r.Wave + 1} of {r.Waves.Count} started ({r.Stage}): {wave.Count} device(s): {string.Join(", ", wave.Select(d => d.Id))}");
            Save(r);
            LogWave(logger, r.Id, r.Wave + 1, r.Waves.Count, wave.Count, r.Stage);
            foreach (var d in wave)
            {
                await SendAsync(r, d, activate: !shadowFirst).ConfigureAwait(false);
            }

            return true;
        }

        // A wave whose start a leader saved but whose sends it did not finish (it died): the rest are sent now.
        var unsent = wave.Where(d => d.SentAt is null && d.Phase == "pending").ToList();
        if (unsent.Count > 0)
        {
            foreach (var d in unsent) await SendAsync(r, d, activate: r.Stage != "shadow").ConfigureAwait(false);
            LogResumedSends(logger, r.Id, r.Wave + 1, unsent.Count);
            return true;
        }

        var silentFor = now - r.StageStarted!.Value;
        var timeout = TimeSpan.FromSeconds(r.OfflineTimeoutSeconds + (r.Stage == "shadow" ? r.SoakSeconds : r.WatchSeconds));
        var failed = wave.Where(d => d.Phase is "failed" or "rolled-back").ToList();
        if (failed.Count > 0)
        {
            await HaltAsync(r, "hub", "halted", $"wave {r.Wave + 1}: {failed.Count} device(s) failed or rolled back ({string.Join("; ", failed.Select(d => $"{d.Id}: {d.Reason}"))})").ConfigureAwait(false);
            return true;
        }

        bool Done(RolloutDevice d) => r.Stage == "shadow"
            ? d.Phase == "shadow" && d.Shadow?.Done == true
            : d.Phase == "active" && d.Confirmed;
        var waiting = wave.Where(d => !Done(d) && d.Phase != "offline").ToList();
        if (waiting.Count > 0 && silentFor < timeout) return false;
        foreach (var d in waiting)
        {
            // Not heard from in time: not updated, not failed. It keeps the desired state it was sent; the result counts it out.
            d.Phase = "offline";
            d.Reason = $"no answer within {timeout.TotalSeconds:0} s (presence {devices.GetValueOrDefault(d.Id)?.Presence ?? "unknown"})";
            Audit("hub", "device.offline", r, d.Reason, d.Id);
        }

        var done = wave.Where(Done).ToList();
        if (r.Stage == "shadow")
        {
            var result = new WaveResult { Wave = r.Wave, Devices = wave.Count, Reported = done.Count, Offline = wave.Count - done.Count, At = now };
            var figures = done.Select(d => d.Shadow!).ToList();
            foreach (var g in r.Gates)
            {
                var v = figures.Count == 0 ? double.NaN : g.Measure(figures);
                result.Gates.Add(new GateFigure { Gate = g.Text, Value = Math.Round(v, 4), Pass = figures.Count > 0 && g.Holds(v) });
            }

            r.Results.Add(result);
            if (done.Count == 0)
            {
                result.Outcome = "no device answered";
                r.State = "paused";
                r.Reason = $"wave {r.Wave + 1}: no device answered in time (all offline); resume to try again";
                Audit("hub", "rollout.pause", r, r.Reason);
                r.Stage = null;
                return true;
            }

            var failing = result.Gates.Where(g => !g.Pass).ToList();
            var summary = string.Join(", ", result.Gates.Select(g => $"{g.Gate}: {g.Value} {(g.Pass ? "pass" : "FAIL")}"));
            if (failing.Count > 0)
            {
                result.Outcome = "gate failed";
                Audit("hub", "rollout.gate", r, $"wave {r.Wave + 1}: {summary}");
                await HaltAsync(r, "hub", "halted", $"wave {r.Wave + 1} failed its gate(s): {string.Join(", ", failing.Select(g => $"{g.Gate} (measured {g.Value})"))}").ConfigureAwait(false);
                return true;
            }

            result.Outcome = "gates passed";
            Audit("hub", "rollout.gate", r, $"wave {r.Wave + 1}: {(summary.Length > 0 ? summary : "no gates")}; {done.Count} shadowed, {wave.Count - done.Count} offline");
            r.Stage = "activating";
            r.StageStarted = now;
            foreach (var d in done) await SendAsync(r, d, activate: true).ConfigureAwait(false);
            return true;
        }

        // Activating: every device of the wave is active and confirmed (or offline): next wave.
        if (r.Results.Count == 0 || r.Results[^1].Wave != r.Wave)
        {
            r.Results.Add(new WaveResult { Wave = r.Wave, Devices = wave.Count, Reported = done.Count, Offline = wave.Count - done.Count, Outcome = "activated", At = now });
        }
        else
        {
            r.Results[^1].Outcome = "activated";
        }

        if (r.Wave + 1 >= r.Waves.Count)
        {
            r.State = "completed";
            r.EndedAt = now;
            var offline = r.Devices.Count(d => d.Phase == "offline");
            Audit("hub", "rollout.complete", r, $"{r.Devices.Count(d => d.Phase == "active")} device(s) active, {offline} offline (not updated)");
            LogCompleted(logger, r.Id, r.Label);
        }
        else
        {
            r.Wave++;
            r.Stage = null;
        }

        return true;
    }

    private async Task SendAsync(Rollout r, RolloutDevice d, bool activate)
    {
        var latency = r.Gates.FirstOrDefault(g => g.Metric == "latency_p99" && g.Relative);
        var errors = r.Gates.FirstOrDefault(g => g.Metric == "errors");
        var desired = new DesiredModel
        {
            Name = r.Model, Version = r.Version, Sha256 = r.Sha256, SizeBytes = r.SizeBytes, Url = r.Url, Activate = activate,
            ShadowSeconds = r.SoakSeconds > 0 ? r.SoakSeconds : r.Gates.Count > 0 ? 10 : 0,
            WatchSeconds = r.WatchSeconds, MaxLatencyRatio = latency?.Threshold, MaxErrorRate = errors?.Threshold, Rollout = r.Id,
        };
        await PublishDesiredAsync(d.Id, desired).ConfigureAwait(false);
        if (d.SentAt is null || d.Phase is "pending" or "offline") d.Phase = "sent";
        d.SentAt ??= time.GetUtcNow();
    }

    /// <summary>Publishes a device's desired state (retained) and keeps it in the store for re-publishing after a restart.</summary>
    public async Task PublishDesiredAsync(string device, DesiredModel desired)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(desired, CompactJsonContext.Default.DesiredModel);
        store.SetDesired(device, $"{desired.Name}@{desired.Version}", System.Text.Encoding.UTF8.GetString(bytes));
        await publisher.PublishAsync(Topics.StateDesired(device), bytes, retain: true).ConfigureAwait(false);
        events.Desired(device);
    }

    /// <summary>The desired state that sends a device back to <paramref name="label"/> (name@version); from the registry when it is there, else by name and version (the device finds it in its other slot).</summary>
    public DesiredModel BackTo(string label, string? rollout)
    {
        var (name, version) = Protocol.Text.ModelRefs.TryParse(label, out var model, out _, versionOptional: true) ? (model.Name, model.Version) : (label, "");
        var m = store.FindModel(name, version);
        return new DesiredModel
        {
            Name = name, Version = version, Sha256 = m?.PackageSha256 ?? "", SizeBytes = m?.SizeBytes ?? 0,
            Url = m is null ? "" : $"/api/models/{Uri.EscapeDataString(m.Name)}/{Uri.EscapeDataString(m.Version)}/package", Activate = true, Rollout = rollout,
        };
    }

    /// <summary>Stops the rollout and sends every device it reached back to the model it had.</summary>
    private async Task HaltAsync(Rollout r, string actor, string state, string reason)
    {
        r.State = state;
        r.Reason = reason;
        r.EndedAt = time.GetUtcNow();
        var back = r.Devices.Where(d => d.SentAt is not null).ToList();
        foreach (var d in back)
        {
            if (d.From is null) continue; // nothing known to go back to: it keeps running what it runs
            await PublishDesiredAsync(d.Id, BackTo(d.From, r.Id)).ConfigureAwait(false);
            if (d.Phase == "rolled-back") continue; // went back by itself already
            d.Phase = "rolling-back";
            d.Reason = reason;
            d.UpdatedAt = time.GetUtcNow();
        }

        Audit(actor, $"rollout.{(state == "halted" ? "halt" : "abort")}", r, $"{reason}; {back.Count} device(s) sent back: {string.Join(", ", back.Select(d => $"{d.Id}→{d.From}"))}; {r.Devices.Count(d => d.SentAt is null)} never received it");
        LogHalted(logger, r.Id, r.Label, reason);
    }

    /// <summary>Starts a rollout (already validated by the API).</summary>
    public async Task<Rollout> StartAsync(Rollout r, string actor)
    {
        var exclusive = await EnterAsync().ConfigureAwait(false);
        try
        {
            Save(r);
            Audit(actor, "rollout.start", r, $"to {r.Target} ({r.Devices.Count} device(s)), waves {string.Join(", ", r.Waves.Select(w => $"{w}%"))}, gates {(r.Gates.Count == 0 ? "none" : string.Join(" ", r.Gates.Select(g => g.Text)))}, soak {r.SoakSeconds} s");
            return r;
        }
        finally
        {
            exclusive.Dispose();
        }
    }

    /// <summary>pause, resume or abort; returns the rollout, or an error message.</summary>
    public async Task<(Rollout? Rollout, string? Error)> ControlAsync(string id, string action, string actor)
    {
        var exclusive = await EnterAsync().ConfigureAwait(false);
        try
        {
            if (Find(id) is not { } r) return (null, $"no rollout {id}");
            switch (action)
            {
                case "pause" when r.State == "running":
                    r.State = "paused";
                    r.Reason = $"paused by {actor}";
                    break;
                case "resume" when r.State == "paused":
                    r.State = "running";
                    r.Reason = null;
                    if (r.Stage is not null) r.StageStarted = time.GetUtcNow(); // devices get their full time again
                    break;
                case "abort" when r.Active:
                    await HaltAsync(r, actor, "aborted", $"aborted by {actor}").ConfigureAwait(false);
                    Save(r);
                    return (r, null);
                default:
                    return (r, $"rollout {id} is {r.State}: cannot {action} it");
            }

            Save(r);
            Audit(actor, $"rollout.{action}", r, r.Reason ?? "resumed");
            return (r, null);
        }
        finally
        {
            exclusive.Dispose();
        }
    }

    /// <summary>
    /// <c>edgeml rollback GROUP</c>: every device of the group goes back to the model it ran before its current one;
    /// an active rollout to the group is aborted first.
    /// </summary>
    public async Task<List<(string Device, string To)>> RollbackGroupAsync(string group, string actor)
    {
        var sent = new List<(string, string)>();
        foreach (var r in All().Where(r => r.Active && r.Target == $"group:{group}"))
        {
            await ControlAsync(r.Id, "abort", actor).ConfigureAwait(false);
        }

        foreach (var d in store.Devices().Where(d => d.Group == group))
        {
            ReportedState? rep = null;
            try
            {
                rep = d.ReportedJson is null ? null : JsonSerializer.Deserialize(d.ReportedJson, ProtocolJsonContext.Default.ReportedState);
            }
            catch (JsonException)
            {
            }

            var previous = rep?.Previous;
            if (previous is null || previous == "none" || previous == rep!.Active) continue;
            await PublishDesiredAsync(d.Id, BackTo(previous, null)).ConfigureAwait(false);
            sent.Add((d.Id, previous));
        }

        store.AddAudit(new AuditEntry(time.GetUtcNow(), actor, "rollback", $"group {group}",
            sent.Count == 0 ? "no device had a previous model" : string.Join(", ", sent.Select(s => $"{s.Item1}→{s.Item2}"))));
        return sent;
    }

    [LoggerMessage(EventId = 2606, Level = LogLevel.Warning, Message = "Rollout {Id}: wave {Wave} was started by a replica that stopped while sending; sent the {Devices} device(s) it had not")]
    private static partial void LogResumedSends(ILogger logger, string id, int wave, int devices);

    [LoggerMessage(EventId = 2600, Level = LogLevel.Information, Message = "Rollout {Id}: wave {Wave} of {Waves} started with {Devices} device(s) ({Stage})")]
    private static partial void LogWave(ILogger logger, string id, int wave, int waves, int devices, string stage);

    [LoggerMessage(EventId = 2601, Level = LogLevel.Warning, Message = "Rollout {Id} of {Model} stopped: {Reason}")]
    private static partial void LogHalted(ILogger logger, string id, string model, string reason);

    [LoggerMessage(EventId = 2602, Level = LogLevel.Information, Message = "Rollout {Id} of {Model} completed")]
    private static partial void LogCompleted(ILogger logger, string id, string model);

    [LoggerMessage(EventId = 2603, Level = LogLevel.Warning, Message = "Rollout tick failed: {Error}")]
    private static partial void LogTickFailed(ILogger logger, string error);

    [LoggerMessage(EventId = 2604, Level = LogLevel.Warning, Message = "Could not re-publish the desired state of {Device}: {Error}")]
    private static partial void LogRepublishFailed(ILogger logger, string device, string error);

    [LoggerMessage(EventId = 2607, Level = LogLevel.Warning, Message = "Cannot read the desired states to publish them again (tried again at the next tick): {Error}")]
    private static partial void LogRepublishUnreadable(ILogger logger, string error);
}
