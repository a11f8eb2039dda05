namespace EdgeMl.Agent.Pipeline;

/// <summary>The last stage: something that acts on each prediction (GPIO, the result log). Called on one thread, in order.</summary>
public interface IPredictionSink
{
    void OnPrediction(Prediction prediction);
}
