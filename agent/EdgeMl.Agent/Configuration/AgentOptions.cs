using EdgeMl.Agent.Actions;
using EdgeMl.Agent.Inference;
using EdgeMl.Agent.Pipeline;

namespace EdgeMl.Agent.Configuration;

/// <summary>
/// The agent's settings, section <c>Agent</c> of <c>appsettings.json</c>, overridable by environment
/// variables (<c>EDGEML_Agent__Inference__Threads=2</c>) and the command line (<c>--Agent:Inference:Threads=2</c>).
/// </summary>
public sealed class AgentOptions
{
    public const string Section = "Agent";

    /// <summary>Path of the <c>.edgepkg</c> to run.</summary>
    public string Model { get; set; } = "";
    /// <summary>The sensor, e.g. <c>sim:vibration</c>, <c>mpu6050,bus=1,address=0x68</c> (see README).</summary>
    public string Sensor { get; set; } = "";
    /// <summary>
    /// Where the agent keeps its state (the outbox, <c>agent.db</c>). Empty: nothing is stored, predictions
    /// only go to the result log.
    /// </summary>
    public string DataDirectory { get; set; } = "";
    public Outbox.OutboxSettings Outbox { get; set; } = new();
    /// <summary>The hub the outbox is delivered to over MQTT (needs <see cref="DataDirectory"/>).</summary>
    public Sync.HubSettings Hub { get; set; } = new();
    /// <summary>Seed of simulated sensors.</summary>
    public int Seed { get; set; } = 1;
    /// <summary>Where predictions go, one JSON line each: a file path, or <c>-</c> for stdout.</summary>
    public string ResultLog { get; set; } = "-";
    /// <summary><c>json</c> (one JSON object per line) or <c>text</c> (for people watching a terminal; stdout only).</summary>
    public string ResultFormat { get; set; } = "json";
    /// <summary>Seconds between health lines in the log (0: none).</summary>
    public int HealthIntervalSeconds { get; set; } = 30;
    /// <summary>After loading, hand start-up-only pages of ONNX Runtime and the agent back to the kernel (Linux; saves ~18 MB RSS).</summary>
    public bool ReleaseStartupPages { get; set; } = true;
    public InferenceSettings Inference { get; set; } = new();
    public PipelineSettings Pipeline { get; set; } = new();
    public GpioSettings Gpio { get; set; } = new();
    public List<ActionRule> Actions { get; set; } = [];
    public Drift.DriftSettings Drift { get; set; } = new();
    /// <summary>A Prometheus endpoint on the device (off by default; docs/metrics.md).</summary>
    public Metrics.MetricsSettings Metrics { get; set; } = new();
    /// <summary>Public keys (PEM files or directories of *.pub) a package must be signed with; empty: unsigned packages run, with a warning.</summary>
    public List<string> TrustedKeys { get; set; } = [];
}

public sealed class GpioSettings
{
    /// <summary><c>auto</c> (the board's driver), <c>libgpiod</c>, <c>sysfs</c> or <c>simulated</c> (no pins: development machines).</summary>
    public string Driver { get; set; } = "auto";
    /// <summary>GPIO chip number for libgpiod.</summary>
    public int Chip { get; set; }
}
