using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.Agent.Updates;

/// <summary>
/// Two model slots (<c>{data}/slots/a.edgepkg</c>, <c>b.edgepkg</c>) beside the configured package, and one small
/// state file (<c>slots.json</c>) that says which one runs. Every change of the running model is one durable
/// write of that file (write a temporary file, fsync it, rename it over the old one, fsync the directory): after
/// a power loss at any instant the agent finds either the old state or the new one, and both name a complete,
/// verified package (a new slot file is written and synced before the state that points at it, and a slot's old
/// model is forgotten by the state before its file is overwritten).
/// <para>
/// Crash counting: every start counts a boot of the active model; reaching a healthy run resets the count. A model
/// that did not reach a healthy run in two starts in a row crashed the agent twice: it is marked bad and the
/// previous model runs. A model that is marked bad is never started again by an update (until the desired
/// model changes).
/// </para>
/// </summary>
public sealed partial class ModelSlots
{
    public const string Configured = "config";
    private const int CrashLimit = 2;
    private readonly string _configured;
    private readonly SlotState _state;

    public ModelSlots(string dataDirectory, string configuredModel)
    {
        Directory = Path.Combine(dataDirectory, "slots");
        _configured = configuredModel;
        System.IO.Directory.CreateDirectory(Directory);
        _state = Load();
    }

    public string Directory { get; }
    public string StatePath => Path.Combine(Directory, "slots.json");

    /// <summary>Test hook: called at each step of a write with the step's name (a test throws or kills the process there).</summary>
    public Action<string>? CrashPoint { get; set; }

    /// <summary>The state as last written (a copy).</summary>
    public SlotState State => Clone(_state);

    public string ActiveSlot => _state.Active;

    /// <summary>Set by <see cref="Resolve"/> when the configured package changed since the last start (why the slots were left).</summary>
    public string? ConfigurationChanged { get; private set; }
    public string? PreviousSlot => _state.Previous;
    public bool InTrial => _state.Trial;

    public string PathOf(string slot) => slot == Configured ? _configured : Path.Combine(Directory, $"{slot}.edgepkg");

    /// <summary>What the slot holds (name, version, SHA-256); the configured package is read and hashed.</summary>
    public SlotModel? ModelOf(string? slot)
    {
        if (slot is null) return null;
        if (slot != Configured) return _state.Slots.GetValueOrDefault(slot);
        if (_state.ConfiguredModel is { } cached && cached.Path == _configured) return cached;
        try
        {
            var m = ModelPackage.Open(_configured).Manifest;
            using var f = File.OpenRead(_configured);
            return _state.ConfiguredModel = new SlotModel { Name = m.Name, Version = m.Version, Sha256 = Convert.ToHexStringLower(SHA256.HashData(f)), Path = _configured };
        }
        catch (Exception e) when (e is IOException or ModelPackageException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public static string Describe(SlotModel? m) => m is null ? "none" : $"{m.Name}@{m.Version}";

    /// <summary>
    /// At start: counts a boot of the active model; a model that crashed the agent twice in a row is marked bad and
    /// the previous one is used instead. Returns the package to load.
    /// </summary>
    public string Resolve(DateTimeOffset now)
    {
        // An engineer who puts another package in Agent:Model (or replaces the file) means it: it runs, and what ran
        // before becomes the previous model.
        var known = _state.ConfiguredModel;
        _state.ConfiguredModel = null;
        var configured = ModelOf(Configured);
        if (known is not null && configured is not null && (known.Path != configured.Path || known.Sha256 != configured.Sha256))
        {
            ConfigurationChanged = $"Agent:Model changed ({Describe(known)} → {Describe(configured)}): running it instead of {(_state.Active == Configured ? "the old one" : $"slot {_state.Active}")}";
            if (_state.Active != Configured) _state.Previous = _state.Active;
            _state.Active = Configured;
            _state.Trial = false;
            _state.Boots = 0;
        }

        if (_state.Active != Configured && !File.Exists(PathOf(_state.Active)))
        {
            Fallback($"slot {_state.Active} has no package", now);
        }
        else if (_state.Boots >= CrashLimit && Alternative() is not null)
        {
            Fallback($"{Describe(ModelOf(_state.Active))} crashed the agent {_state.Boots} times in a row", now);
        }

        _state.Boots++;
        Write("boot");
        return PathOf(_state.Active);
    }

    /// <summary>The active model ran healthily (predictions came out): the crash count starts again.</summary>
    public void Healthy()
    {
        if (_state.Boots == 0) return;
        _state.Boots = 0;
        Write("healthy");
    }

    /// <summary>The active model passed its watch period: it is no longer on trial.</summary>
    public void Confirm()
    {
        _state.Trial = false;
        _state.Boots = 0;
        Write("confirm");
    }

    /// <summary>
    /// Puts a verified, staged package into the slot that is not running and makes it the active one, on trial.
    /// The package file is complete and synced before the one write that switches.
    /// </summary>
    public string Activate(string stagedPackage, SlotModel model, WatchTerms terms, double previousP99Ms)
    {
        var target = _state.Active == "a" ? "b" : "a";
        var path = PathOf(target);
        if (_state.Slots.Remove(target) | _state.Previous == target)
        {
            // A third or later activation: the target slot holds the previous model, whose bytes are about to be
            // replaced. The state stops naming them first (one durable write), so that a power loss during the copy
            // leaves no state that claims the previous model is in a slot that holds part of the new one.
            if (_state.Previous == target) _state.Previous = null;
            Write("forget");
        }

        CrashPoint?.Invoke("copy");
        var tmp = path + ".tmp";
        using (var src = File.OpenRead(stagedPackage))
        using (var dst = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        {
            src.CopyTo(dst);
            CrashPoint?.Invoke("copy-written");
            dst.Flush(flushToDisk: true);
        }

        using (var check = File.OpenRead(tmp))
        {
            var sha = Convert.ToHexStringLower(SHA256.HashData(check));
            if (sha != model.Sha256) throw new InvalidDataException($"slot {target}: copied package has SHA-256 {sha[..16]}…, expected {model.Sha256[..16]}…");
        }

        File.Move(tmp, path, overwrite: true);
        SyncDirectory(Directory);
        CrashPoint?.Invoke("slot-synced");
        _state.Slots[target] = model;
        _state.Previous = _state.Active;
        _state.Active = target;
        _state.Trial = true;
        _state.Boots = 0;
        _state.Terms = terms;
        _state.PreviousP99Ms = previousP99Ms;
        _state.LastRollback = null;
        Write("switch");
        return path;
    }

    /// <summary>Switches back to the previous model (the hub asked for it, or the watch failed); the model left is marked bad when <paramref name="bad"/>.</summary>
    public bool RollBack(string reason, bool bad, DateTimeOffset now)
    {
        if (Alternative() is null) return false;
        if (bad) Fallback(reason, now);
        else
        {
            (_state.Active, _state.Previous) = (_state.Previous!, _state.Active);
            _state.Trial = false;
            _state.Boots = 0;
            Write("switch-back");
        }

        return true;
    }

    /// <summary>The slot holding a model with this SHA-256, if any (the hub's rollback target is usually there already).</summary>
    public string? SlotWith(string sha256, string name, string version)
    {
        foreach (var slot in new[] { _state.Previous, _state.Active })
        {
            if (slot is null || ModelOf(slot) is not { } m || (slot != Configured && !File.Exists(PathOf(slot)))) continue;
            if (sha256.Length > 0 ? m.Sha256 == sha256 : m.Name == name && m.Version == version) return slot;
        }

        return null;
    }

    public BadModel? Bad(string sha256) => _state.Bad.FirstOrDefault(b => b.Sha256 == sha256);

    private string? Alternative() =>
        _state.Previous is { } p && p != _state.Active && (p == Configured || File.Exists(PathOf(p))) && Bad(ModelOf(p)?.Sha256 ?? "") is null ? p : null;

    private void Fallback(string reason, DateTimeOffset now)
    {
        var failed = ModelOf(_state.Active);
        if (failed is not null && _state.Active != Configured)
        {
            _state.Bad.RemoveAll(b => b.Sha256 == failed.Sha256);
            _state.Bad.Add(new BadModel { Name = failed.Name, Version = failed.Version, Sha256 = failed.Sha256, Reason = reason, At = now });
        }

        var to = Alternative() ?? Configured;
        _state.LastRollback = new BadModel { Name = failed?.Name ?? "?", Version = failed?.Version ?? "?", Sha256 = failed?.Sha256 ?? "", Reason = reason, At = now };
        _state.Previous = _state.Active == to ? null : _state.Active;
        _state.Active = to;
        _state.Trial = false;
        _state.Boots = 0;
        Write("fallback");
    }

    private SlotState Load()
    {
        if (!File.Exists(StatePath)) return new SlotState();
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllBytes(StatePath), SlotJsonContext.Default.SlotState) ?? new SlotState();
        }
        catch (JsonException e)
        {
            // Cannot happen through Write (rename is atomic); a hand-edited file must not leave the device without a model.
            throw new InvalidDataException($"{StatePath}: not a slot state ({e.Message}); delete it to run the configured model", e);
        }
    }

    private void Write(string step)
    {
        var tmp = StatePath + ".tmp";
        using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        {
            JsonSerializer.Serialize(f, _state, SlotJsonContext.Default.SlotState);
            CrashPoint?.Invoke(step + ":written");
            f.Flush(flushToDisk: true);
        }

        CrashPoint?.Invoke(step + ":synced");
        File.Move(tmp, StatePath, overwrite: true);
        SyncDirectory(Directory);
        CrashPoint?.Invoke(step + ":renamed");
    }

    private static SlotState Clone(SlotState s) =>
        JsonSerializer.Deserialize(JsonSerializer.SerializeToUtf8Bytes(s, SlotJsonContext.Default.SlotState), SlotJsonContext.Default.SlotState)!;

    /// <summary>fsync of the directory, so the rename itself is on disk (Linux); elsewhere a no-op.</summary>
    private static void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux()) return;
        var fd = Open(directory, 0 /* O_RDONLY */);
        if (fd < 0) return;
        _ = Fsync(fd);
        _ = Close(fd);
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync")]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    /// <summary>
    /// Kills this process with SIGKILL when <c>EDGEML_TEST_CRASH_AT</c> names the step (power-loss tests of the real
    /// agent). Only in builds with test hooks (Debug, which the crash tests run): a Release build, and so every
    /// published agent, has no such hook; there this returns null and the variable is not even read.
    /// </summary>
    public static Action<string>? CrashPointFromEnvironment()
    {
#if !EDGEML_TEST_HOOKS
        return null;
#else
        var at = Environment.GetEnvironmentVariable("EDGEML_TEST_CRASH_AT");
        if (string.IsNullOrEmpty(at)) return null;
        var points = at.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return step =>
        {
            if (points.Contains(step)) System.Diagnostics.Process.GetCurrentProcess().Kill();
        };
#endif
    }
}

/// <summary>The terms of the watch period after an activation (from the desired state).</summary>
public sealed class WatchTerms
{
    public int WatchSeconds { get; set; } = 30;
    public double MaxLatencyRatio { get; set; }
    public double MaxErrorRate { get; set; }
    public string? Rollout { get; set; }
}

public sealed class SlotModel
{
    public string Name { get; set; } = "";
    public string Version { get; set; } = "";
    public string Sha256 { get; set; } = "";
    /// <summary>For the configured package: its path when hashed.</summary>
    public string? Path { get; set; }
}

public sealed class BadModel
{
    public string Name { get; set; } = "";
    public string Version { get; set; } = "";
    public string Sha256 { get; set; } = "";
    public string Reason { get; set; } = "";
    public DateTimeOffset At { get; set; }
}

public sealed class SlotState
{
    /// <summary><c>config</c> (the configured package), <c>a</c> or <c>b</c>.</summary>
    public string Active { get; set; } = ModelSlots.Configured;
    public string? Previous { get; set; }
    public bool Trial { get; set; }
    /// <summary>Starts of the active model since it last ran healthily.</summary>
    public int Boots { get; set; }
    public Dictionary<string, SlotModel> Slots { get; set; } = [];
    public SlotModel? ConfiguredModel { get; set; }
    public WatchTerms? Terms { get; set; }
    public double PreviousP99Ms { get; set; }
    public List<BadModel> Bad { get; set; } = [];
    public BadModel? LastRollback { get; set; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(SlotState))]
internal sealed partial class SlotJsonContext : JsonSerializerContext;
