using System.Diagnostics;
using System.Net.Http.Json;

namespace EdgeMl.FleetHub.Tests.Dashboard;

/// <summary>
/// One real hub (trusting an operator's signing key, with <c>vibration-fault@1.1.0</c> in its registry), one real agent
/// (<c>cell-1</c> in group <c>line-1</c>, running a signed 1.0.0 in real time with a health report every second), a viewer
/// and an operator token, and one headless Chromium, shared by the browser tests of a class. Everything it started is
/// ended on dispose, also when a test failed.
/// </summary>
public sealed class DashboardFixture : IAsyncLifetime
{
    public HubHarness Hub { get; } = new();

    public BrowserSession Browser { get; private set; } = null!;

    public string ViewerToken { get; private set; } = "";

    public string OperatorToken { get; private set; } = "";

    /// <summary>The operator's public key (agents started by a test trust it).</summary>
    public string TrustedKey { get; private set; } = "";

    /// <summary>The signed 1.0.0 package agents start with.</summary>
    public string Signed10 { get; private set; } = "";

    public Process Agent1 { get; private set; } = null!;

    /// <summary>Where each run's screenshots go: <c>artifacts/screenshots/</c> of this checkout.</summary>
    public static string Screenshots { get; } = ScreenshotDirectory();

    public async Task InitializeAsync()
    {
        try
        {
            var keys = Path.Combine(Hub.Dir.Path, "keys");
            Assert.Equal(0, HubHarness.Run(HubHarness.CliDll, "keys", "create", "ops", "--dir", keys).Code);
            TrustedKey = Path.Combine(keys, "ops.pub");
            Hub.StartHub(null, "--TrustedKeys:0", TrustedKey);
            var v11 = Hub.SignedVariant("1.1.0", Path.Combine(keys, "ops.key"));
            var push = HubHarness.Run(HubHarness.CliDll, "model", "push", v11, "--hub", Hub.HubUrl, "--token", Hub.OperatorToken);
            Assert.True(push.Code == 0, push.Err);
            Signed10 = Hub.SignedVariant("1.0.0", Path.Combine(keys, "ops.key"));
            ViewerToken = await Token("viewer", "field-engineer");
            OperatorToken = await Token("operator", "shift-lead");
            Agent1 = StartAgent("cell-1", "line-1");
            HubHarness.Until(() => Hub.Device("cell-1").GetProperty("presence").GetString() == "online", "cell-1 online");
            Browser = await BrowserSession.StartAsync();
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    /// <summary>An enrolled agent in <paramref name="group"/>, real-time, health every second, trusting the operator's key.</summary>
    public Process StartAgent(string device, string group)
    {
        Hub.Enroll(device, group);
        return Hub.Agent(device, 0, fast: false, healthEvery: 1, extra: ["--model", Signed10, $"--Agent:TrustedKeys:0={TrustedKey}"]);
    }

    private async Task<string> Token(string role, string name)
    {
        var response = await Hub.Api.PostAsJsonAsync("/api/tokens", new { role, name });
        Assert.True(response.IsSuccessStatusCode);
        return HubHarness.Json(response).GetProperty("token").GetString()!;
    }

    public async Task DisposeAsync()
    {
        try
        {
            if (Browser is not null) await Browser.DisposeAsync();
        }
        finally
        {
            Hub.Dispose();
        }
    }

    private static string ScreenshotDirectory()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeMl.sln"))) dir = dir.Parent;
        var path = Path.Combine(dir?.FullName ?? Path.GetTempPath(), "artifacts", "screenshots");
        Directory.CreateDirectory(path);
        return path;
    }
}
