namespace EdgeMl.FleetHub.Tests;

/// <summary>The load generator speaks the real protocol: the hub enrolls, admits and stores its devices like agents.</summary>
public sealed class FleetSimulatorTests : IDisposable
{
    private readonly HubHarness _h = new();

    [Fact]
    public void Simulated_devices_enroll_stream_and_report_health_through_the_real_hub()
    {
        _h.StartHub();
        var (code, output, err) = HubHarness.Run(Path.Combine(AppContext.BaseDirectory, "edgeml-fleetsim.dll"), "run",
            "--hub", _h.HubUrl, "--token", _h.OperatorToken, "--broker", $"mqtt://127.0.0.1:{_h.Mqtt}", "--devices", "5",
            "--telemetry-every", "0.2", "--batch", "5", "--health-every", "1", "--duration", "3");
        Assert.True(code == 0, err);
        Assert.Contains("0 disconnects", output, StringComparison.Ordinal);

        var devices = _h.Get("/api/devices?group=sim").EnumerateArray().ToList();
        Assert.Equal(5, devices.Count);
        foreach (var d in devices)
        {
            var id = d.GetProperty("id").GetString()!;
            Assert.Equal("enrolled", d.GetProperty("enrollment").GetString());
            Assert.Equal("offline", d.GetProperty("presence").GetString()); // said goodbye at the end
            var seqs = _h.Stored(id).Select(r => r.Seq).ToList();
            Assert.True(seqs.Count >= 25, $"{id}: {seqs.Count} telemetry records in 3 s at 25/s");
            Assert.Equal(seqs.Count, seqs.Distinct().Count());
            Assert.Equal("vibration-fault", _h.Device(id).GetProperty("model").GetString()); // from its health reports
        }
    }

    public void Dispose() => _h.Dispose();
}
