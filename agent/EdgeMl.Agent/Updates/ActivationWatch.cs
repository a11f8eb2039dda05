using EdgeMl.Agent.Pipeline;
using Microsoft.Extensions.Logging;

namespace EdgeMl.Agent.Updates;

/// <summary>
/// The watch period of a model just activated (slot on trial): if it fails inference beyond the error bound or
/// breaks the latency bound (p99 against the previous model's, measured before the switch), the device rolls back
/// by itself — without waiting for the hub — and marks the model bad. When the period passes with predictions
/// coming out, the model is confirmed.
/// </summary>
public sealed partial class ActivationWatch(ModelSlots slots, AgentHealth health, TimeProvider time, ILogger logger)
{
    /// <summary>Fewest predictions before the latency bound is judged (a p99 of a handful is noise).</summary>
    public const int MinPredictionsForLatency = 50;

    /// <summary>Returns the reason for a rollback, or null when the model was confirmed (or the run stopped).</summary>
    public async Task<string?> RunAsync(Func<Task> confirmed, CancellationToken ct)
    {
        var terms = slots.State.Terms ?? new WatchTerms();
        var previousP99 = slots.State.PreviousP99Ms;
        var started = time.GetTimestamp();
        try
        {
            while (true)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(250), time, ct).ConfigureAwait(false);
                var errors = health.InferenceErrors;
                var predictions = health.Predictions;
                var total = errors + predictions;
                if (errors > 0 && (double)errors / total > terms.MaxErrorRate)
                {
                    return $"inference failed on {errors} of {total} windows in the watch period (bound {terms.MaxErrorRate:P1})";
                }

                if (terms.MaxLatencyRatio > 0 && previousP99 > 0 && predictions >= MinPredictionsForLatency)
                {
                    var p99 = health.LatencyP99Ms();
                    if (p99 > terms.MaxLatencyRatio * previousP99)
                    {
                        return $"p99 latency {p99:0.###} ms is {p99 / previousP99:0.00}× the previous model's {previousP99:0.###} ms (bound {terms.MaxLatencyRatio:0.##}×)";
                    }
                }

                if (time.GetElapsedTime(started) >= TimeSpan.FromSeconds(terms.WatchSeconds) && predictions > 0)
                {
                    slots.Confirm();
                    LogConfirmed(logger, terms.WatchSeconds, predictions);
                    await confirmed().ConfigureAwait(false);
                    return null;
                }
            }
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    [LoggerMessage(EventId = 1510, Level = LogLevel.Information, Message = "Watch period passed ({Seconds} s, {Predictions} predictions): the model is confirmed")]
    private static partial void LogConfirmed(ILogger logger, int seconds, long predictions);
}
