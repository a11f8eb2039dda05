namespace EdgeMl.Agent.Pipeline;

/// <summary>The last stage: something that acts on each prediction (GPIO, the result log). Called on one thread, in order.</summary>
/// <remarks>
/// A sink that throws is counted in health under <see cref="Name"/> and skipped for that prediction; one that fails
/// on 20 predictions in a row stops the agent (see <see cref="AgentPipeline"/>).
/// </remarks>
public interface IPredictionSink
{
    /// <summary>The sink's name in health and logs, e.g. <c>outbox</c>, <c>result-log</c>, <c>actions</c>.</summary>
    string Name => "sink";

    void OnPrediction(Prediction prediction);
}
