using System.Security.Cryptography;
using EdgeMl.Agent.Updates;
using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;

namespace EdgeMl.Agent.Tests.Updates;

/// <summary>
/// The slot store under power loss: a "crash" (an exception thrown at a step, after which the store is opened again
/// from disk, as a restarted agent would) at every step of every write. The agent must always find a complete,
/// verified package to run — the old one or the new one — and the state must say which, truthfully.
/// </summary>
public sealed class ModelSlotsTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly string _v10 = TestPackages.VibrationInt8;
    private readonly string _v11;
    private readonly string _v12;
    private readonly string _v13;
    private readonly string _v14;

    public ModelSlotsTests()
    {
        _v11 = TestPackages.Variant(Path.Combine(_dir.Path, "pkgs"), "1.1.0");
        _v12 = TestPackages.Variant(Path.Combine(_dir.Path, "pkgs"), "1.2.0");
        _v13 = TestPackages.Variant(Path.Combine(_dir.Path, "pkgs"), "1.3.0");
        _v14 = TestPackages.Variant(Path.Combine(_dir.Path, "pkgs"), "1.4.0");
    }

    private sealed class PowerLoss(string step) : Exception($"power lost at {step}");

    private static SlotModel Model(string path)
    {
        var m = ModelPackage.Open(path).Manifest;
        return new SlotModel { Name = m.Name, Version = m.Version, Sha256 = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path))) };
    }

    private static string Sha(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>The packages of the activations in order: 1.1.0 goes to slot a, 1.2.0 to b, 1.3.0 to a again (the previous model's slot), 1.4.0 to b.</summary>
    private string[] Updates => [_v11, _v12, _v13, _v14];

    /// <summary>A store at <paramref name="data"/> that has been through the first <paramref name="done"/> activations, each confirmed.</summary>
    private ModelSlots Through(string data, int done)
    {
        var slots = new ModelSlots(data, _v10);
        slots.Resolve(DateTimeOffset.UtcNow);
        foreach (var pkg in Updates.Take(done))
        {
            slots.Activate(pkg, Model(pkg), new WatchTerms(), 1.0);
            slots.Confirm();
        }

        return slots;
    }

    /// <summary>Every step the activation number <paramref name="n"/> (0-based) writes, in order, collected by a store that does not crash.</summary>
    private List<string> StepsOfActivation(int n)
    {
        var steps = new List<string>();
        var slots = Through(Path.Combine(_dir.Path, $"probe{n}"), n);
        slots.CrashPoint = steps.Add;
        slots.Activate(Updates[n], Model(Updates[n]), new WatchTerms(), 1.0);
        return steps;
    }

    /// <summary>Every slot the state names a model for holds exactly that model's bytes, and the previous slot is one of them (or none).</summary>
    private static void AssertSlotsTrueToTheirBytes(ModelSlots slots, string when)
    {
        foreach (var (slot, model) in slots.State.Slots)
        {
            var path = slots.PathOf(slot);
            Assert.True(File.Exists(path), $"{when}: slot {slot} names {model.Version} but has no file");
            Assert.True(model.Sha256 == Sha(path), $"{when}: slot {slot} names {model.Version} but holds {ModelPackage.Open(path).Manifest.Version}");
        }

        if (slots.PreviousSlot is { } previous && previous != ModelSlots.Configured)
        {
            Assert.True(slots.State.Slots.ContainsKey(previous), $"{when}: previous slot {previous} names no model");
        }
    }

    [Theory]
    [InlineData(0)] // from the configured package to slot a
    [InlineData(1)] // from slot a to slot b
    [InlineData(2)] // third: from b to a, the slot that holds the previous model
    [InlineData(3)] // fourth: from a to b, again the previous model's slot
    public void Power_loss_at_any_step_of_an_activation_leaves_the_old_or_the_new_model_complete_and_every_slot_named_truthfully(int n)
    {
        var steps = StepsOfActivation(n);
        Assert.True(steps.Count >= 6, string.Join(", ", steps)); // copy, copy-written, slot-synced, switch:written/synced/renamed
        var next = Updates[n];
        var outcomes = new HashSet<string>();
        foreach (var step in steps)
        {
            var data = Path.Combine(_dir.Path, $"run{n}-{step.Replace(':', '-')}");
            var slots = Through(data, n);
            var before = slots.ModelOf(slots.ActiveSlot)!;
            slots.CrashPoint = s => { if (s == step) throw new PowerLoss(s); };
            Assert.Throws<PowerLoss>(() => slots.Activate(next, Model(next), new WatchTerms(), 1.0));

            // The agent starts again.
            var restarted = new ModelSlots(data, _v10);
            var path = restarted.Resolve(DateTimeOffset.UtcNow);
            var running = restarted.ModelOf(restarted.ActiveSlot)!;
            Assert.True(running.Sha256 == before.Sha256 || running.Sha256 == Sha(next), $"crash at {step}: runs {running.Version}");
            Assert.Equal(running.Sha256, Sha(path)); // the file it loads is complete and is the model the state names
            Assert.Equal(running.Version, ModelPackage.Open(path).Manifest.Version);
            Assert.Equal(running.Sha256 != before.Sha256, restarted.InTrial); // a new model is on trial, an old one is not
            AssertSlotsTrueToTheirBytes(restarted, $"crash at {step}");

            // A rollback from here (the watch fails, the hub asks) runs what the state says it runs.
            if (restarted.RollBack("test", bad: false, DateTimeOffset.UtcNow))
            {
                var back = restarted.ModelOf(restarted.ActiveSlot)!;
                Assert.Equal(back.Sha256, Sha(restarted.PathOf(restarted.ActiveSlot)));
            }

            outcomes.Add(running.Sha256 == before.Sha256 ? "old" : "new");
        }

        Assert.Equal(["new", "old"], outcomes.Order()); // crashes before the switch keep the old, after it run the new
    }

    [Fact]
    public void A_model_that_crashes_the_agent_twice_in_a_row_is_marked_bad_and_the_previous_one_runs()
    {
        var data = Path.Combine(_dir.Path, "loop");
        var slots = new ModelSlots(data, _v10);
        slots.Resolve(DateTimeOffset.UtcNow);
        slots.Healthy();
        slots.Activate(_v11, Model(_v11), new WatchTerms(), 1.0);

        // Two starts on 1.1.0 that never reach a healthy run (killed), then a third start.
        Assert.Equal("1.1.0", ModelPackage.Open(new ModelSlots(data, _v10).Resolve(DateTimeOffset.UtcNow)).Manifest.Version);
        Assert.Equal("1.1.0", ModelPackage.Open(new ModelSlots(data, _v10).Resolve(DateTimeOffset.UtcNow)).Manifest.Version);
        var third = new ModelSlots(data, _v10);
        var path = third.Resolve(DateTimeOffset.UtcNow);
        Assert.Equal("1.0.0", ModelPackage.Open(path).Manifest.Version);
        Assert.Equal(ModelSlots.Configured, third.ActiveSlot);
        var bad = third.Bad(Sha(_v11));
        Assert.NotNull(bad);
        Assert.Contains("crashed the agent 2 times in a row", bad.Reason, StringComparison.Ordinal);
        Assert.Equal("1.1.0", third.State.LastRollback!.Version);

        // A healthy model is not rolled back however often the agent is restarted.
        for (var i = 0; i < 4; i++)
        {
            var s = new ModelSlots(data, _v10);
            Assert.Equal("1.0.0", ModelPackage.Open(s.Resolve(DateTimeOffset.UtcNow)).Manifest.Version);
            s.Healthy();
        }
    }

    [Fact]
    public void Power_loss_during_a_rollback_leaves_the_bad_or_the_previous_model_and_a_rollback_to_the_other_slot_needs_no_download()
    {
        ModelSlots Prepared(string name)
        {
            var slots = new ModelSlots(Path.Combine(_dir.Path, name), _v10);
            slots.Resolve(DateTimeOffset.UtcNow);
            slots.Activate(_v11, Model(_v11), new WatchTerms(), 1.0);
            slots.Confirm();
            slots.Activate(_v12, Model(_v12), new WatchTerms(), 1.0);
            return slots;
        }

        var probe = Prepared("rb-probe");
        Assert.Equal("a", probe.SlotWith(Sha(_v11), "", "")); // 1.1.0 waits in the other slot
        var steps = new List<string>();
        probe.CrashPoint = steps.Add;
        Assert.True(probe.RollBack("latency bound", bad: true, DateTimeOffset.UtcNow));
        Assert.Equal("1.1.0", probe.ModelOf(probe.ActiveSlot)!.Version);
        Assert.NotEmpty(steps);

        var outcomes = new HashSet<string>();
        foreach (var step in steps)
        {
            var slots = Prepared($"rb-{step.Replace(':', '-')}");
            slots.CrashPoint = s => { if (s == step) throw new PowerLoss(s); };
            Assert.Throws<PowerLoss>(() => slots.RollBack("latency bound", bad: true, DateTimeOffset.UtcNow));
            var restarted = new ModelSlots(slots.Directory[..^"/slots".Length], _v10);
            var version = ModelPackage.Open(restarted.Resolve(DateTimeOffset.UtcNow)).Manifest.Version;
            Assert.Contains(version, new[] { "1.1.0", "1.2.0" });
            Assert.Equal(version == "1.1.0", restarted.Bad(Sha(_v12)) is not null); // marked bad exactly when it was left
            outcomes.Add(version);
        }

        Assert.Equal(["1.1.0", "1.2.0"], outcomes.Order());
    }

    [Fact]
    public void A_new_package_in_agent_model_wins_over_the_slots_and_what_ran_becomes_the_previous_model()
    {
        var data = Path.Combine(_dir.Path, "config-change");
        var slots = new ModelSlots(data, _v10);
        slots.Resolve(DateTimeOffset.UtcNow);
        slots.Activate(_v11, Model(_v11), new WatchTerms(), 1.0);
        slots.Confirm();
        Assert.Equal("1.1.0", ModelPackage.Open(new ModelSlots(data, _v10).Resolve(DateTimeOffset.UtcNow)).Manifest.Version);

        // The engineer deploys 1.2.0 as the configured package: it runs; 1.1.0 waits in its slot.
        var restarted = new ModelSlots(data, _v12);
        Assert.Equal("1.2.0", ModelPackage.Open(restarted.Resolve(DateTimeOffset.UtcNow)).Manifest.Version);
        Assert.Contains("Agent:Model changed (vibration-fault@1.0.0 → vibration-fault@1.2.0)", restarted.ConfigurationChanged, StringComparison.Ordinal);
        Assert.Equal(ModelSlots.Configured, restarted.ActiveSlot);
        Assert.Equal("a", restarted.PreviousSlot);
        Assert.False(restarted.InTrial);

        // Unchanged configuration: nothing moves.
        var again = new ModelSlots(data, _v12);
        Assert.Equal("1.2.0", ModelPackage.Open(again.Resolve(DateTimeOffset.UtcNow)).Manifest.Version);
        Assert.Null(again.ConfigurationChanged);
    }

    public void Dispose() => _dir.Dispose();
}
