using EdgeMl.Agent.Inference;
using EdgeMl.Agent.Pipeline;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.Agent.Updates;

/// <summary>What the updater needs of the running agent: its model, its live latency, a place for a shadow, a way to restart on another slot.</summary>
public sealed class UpdateContext(ModelManifest manifest, InferenceSettings inference, AgentPipeline pipeline, AgentHealth health, Action<string> restart)
{
    public ModelManifest Manifest => manifest;
    public InferenceSettings Inference => inference;
    public double LatencyP99Ms() => health.LatencyP99Ms();
    public void AttachShadow(IShadow? shadow) => pipeline.Shadow = shadow;
    public void Restart(string reason) => restart(reason);
}
