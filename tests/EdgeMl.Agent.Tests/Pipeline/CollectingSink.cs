using EdgeMl.Agent.Pipeline;

namespace EdgeMl.Agent.Tests.Pipeline;

/// <summary>Keeps a copy of every prediction and lets a test wait for one that matches.</summary>
internal sealed class CollectingSink : IPredictionSink
{
    private readonly Lock _gate = new();
    private readonly List<(long Seq, double T, string? Label, float Score, float[] Values)> _seen = [];
    private readonly List<(Func<float[], bool> When, TaskCompletionSource Done)> _waiters = [];

    public void OnPrediction(Prediction p)
    {
        lock (_gate)
        {
            var values = p.Values[0].ToArray();
            _seen.Add((p.Sequence, p.WindowEndSeconds, p.Label, p.Score, values));
            foreach (var w in _waiters.Where(w => w.When(values)).ToList())
            {
                w.Done.TrySetResult();
                _waiters.Remove(w);
            }
        }
    }

    public int Count
    {
        get { lock (_gate) return _seen.Count; }
    }

    public List<(long Seq, double T, string? Label, float Score, float[] Values)> Snapshot()
    {
        lock (_gate) return [.. _seen];
    }

    /// <summary>Completes when a prediction whose first output satisfies <paramref name="when"/> arrives (after now).</summary>
    public Task WaitFor(Func<float[], bool> when, TimeSpan timeout)
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate) _waiters.Add((when, tcs));
        return tcs.Task.WaitAsync(timeout);
    }
}

internal static class Eventually
{
    /// <summary>Waits until <paramref name="condition"/> holds, checking as things change; fails after a generous timeout.</summary>
    public static async Task True(Func<bool> condition, string what, int timeoutMs = 10_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline) Assert.Fail($"timed out waiting for: {what}");
            await Task.Delay(5);
        }
    }
}
