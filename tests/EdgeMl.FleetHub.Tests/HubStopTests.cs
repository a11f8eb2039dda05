namespace EdgeMl.FleetHub.Tests;

/// <summary>Stopping the hub the ordinary way (SIGTERM: Ctrl-C, <c>systemctl stop</c>) is a clean exit, not a crash.</summary>
public sealed class HubStopTests : IDisposable
{
    private readonly HubHarness _hub = new();

    public void Dispose() => _hub.Dispose();

    [Fact]
    public void A_hub_stopped_with_sigterm_exits_0_without_an_unhandled_exception()
    {
        _hub.StartHub();
        var code = _hub.StopHub();
        var log = string.Join("\n", _hub.HubLog);
        Assert.DoesNotContain("Unhandled exception", log, StringComparison.Ordinal);
        Assert.True(code == 0, $"exit {code}:\n{log}");
    }
}
