using EdgeMl.Agent.Configuration;
using EdgeMl.Agent.Hosting;
using EdgeMl.Agent.Sensors;
using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.Mqtt;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeMl.Agent.Tests.Pipeline;

/// <summary>
/// The runtime's background stages (uplink, health loop, drift timer) never die unobserved: a fault one of them does
/// not handle ends the whole run within seconds, and <see cref="AgentRuntime.RunAsync"/> throws one line naming it.
/// The fault is the outbox going away under the stage; the sensor is so slow (1 Hz, 256-sample windows) that no
/// prediction (and so no sink) touches the outbox, and only the stage under test runs.
/// </summary>
public sealed class BackgroundStageFaultTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private AgentOptions Options(int healthEvery = 0, bool drift = false, string broker = "") => new()
    {
        Model = TestPackages.VibrationInt8,
        Sensor = "slow",
        DataDirectory = Path.Combine(_dir.Path, "data"),
        HealthIntervalSeconds = healthEvery,
        Drift = new Agent.Drift.DriftSettings { Enabled = drift, WindowSeconds = 1 },
        Hub = new Agent.Sync.HubSettings { Broker = broker, DeviceId = "stage-test" },
    };

    /// <summary>Runs until <paramref name="ran"/> says the stage did its work once, then takes the outbox away.</summary>
    private static async Task<AgentStoppedException> StopsWithin(AgentOptions options, Func<AgentRuntime, bool> ran)
    {
        using var runtime = new AgentRuntime(options, NullLoggerFactory.Instance, sensor: new SlowSource(), resultStream: new MemoryStream());
        var run = runtime.RunAsync(CancellationToken.None);
        await Eventually.True(() => ran(runtime), "the stage to run once on a working outbox");
        runtime.Outbox!.Dispose();
        return await Assert.ThrowsAsync<AgentStoppedException>(() => run.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task The_health_loop_failing_stops_the_agent_with_the_health_stage_named()
    {
        var options = Options(healthEvery: 1);
        var e = await StopsWithin(options, _ => File.Exists(AgentRuntime.HealthPath(options.DataDirectory)));
        Assert.Equal("health", e.Stage);
        Assert.StartsWith("health failed: Cannot access a disposed object", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_drift_timer_failing_stops_the_agent_instead_of_crashing_the_process_from_a_timer_thread()
    {
        var e = await StopsWithin(Options(drift: true), r => r.Outbox!.Stats().Depth[Protocol.Wire.RecordClass.Drift] > 0);
        Assert.Equal("drift", e.Stage);
    }

    [SkippableFact]
    public async Task The_uplink_failing_stops_the_agent_with_the_uplink_stage_named()
    {
        Skip.IfNot(Mosquitto.Available, "mosquitto is not installed (./build.sh test installs it)");
        using var broker = new Mosquitto().Start();
        using var sub = new MosquittoSub(broker.Port, "edgeml/stage-test/status", "observer");
        var e = await StopsWithin(Options(broker: broker.Url), _ => sub.Messages.Any(m => m.Payload.Contains("\"online\"", StringComparison.Ordinal)));
        Assert.Equal("uplink", e.Stage);
        Assert.DoesNotContain('\n', e.Message);
    }

    /// <summary>The vibration model's channels at 1 Hz: samples (for drift), but no window for minutes.</summary>
    private sealed class SlowSource : ISensorSource
    {
        public string Name => "slow";
        public IReadOnlyList<string> Channels { get; } = ["ax", "ay", "az"];
        public double SampleRateHz => 1;
        public bool IsVirtual => false;

        public bool Read(Span<float> values)
        {
            values.Fill(0.5f);
            return true;
        }

        public void Dispose()
        {
        }
    }
}
