namespace EdgeMl.Agent.Drift;

/// <summary>Bound from <c>Agent:Drift</c>: drift sketches of the model's inputs and outputs (needs a data directory and a baseline in the package).</summary>
public sealed class DriftSettings
{
    public bool Enabled { get; set; } = true;
    /// <summary>Length of a reporting window; each window's sketches become one drift record.</summary>
    public double WindowSeconds { get; set; } = 300;
    /// <summary>KLL sketch size (rank error about 1.65/K; about 12·K bytes on the wire per feature).</summary>
    public int K { get; set; } = 200;
}
