using Microsoft.Playwright;

namespace EdgeMl.FleetHub.Tests.Dashboard;

/// <summary>
/// Debian's Chromium (<c>/usr/bin/chromium</c>, installed by <c>./build.sh test</c>) driven headless by Playwright through
/// its executable path: no browser is downloaded. Playwright starts it with a fresh temporary profile (its
/// <c>--user-data-dir</c>) and ends it, and its own driver process, on dispose.
/// </summary>
public sealed class BrowserSession : IAsyncDisposable
{
    public const string Chromium = "/usr/bin/chromium";

    private BrowserSession(IPlaywright playwright, IBrowser browser)
    {
        Playwright = playwright;
        Browser = browser;
    }

    public IPlaywright Playwright { get; }

    public IBrowser Browser { get; }

    public static async Task<BrowserSession> StartAsync()
    {
        Assert.True(File.Exists(Chromium), $"{Chromium} is needed (./build.sh test installs Debian's chromium)");
        var playwright = await Microsoft.Playwright.Playwright.CreateAsync();
        try
        {
            var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = Chromium,
                Headless = true,
                Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
                Timeout = 60_000,
            });
            return new BrowserSession(playwright, browser);
        }
        catch
        {
            playwright.Dispose();
            throw;
        }
    }

    /// <summary>A new, empty browser context (own cookies) at desktop size, with the hub as base URL.</summary>
    public async Task<IPage> NewPageAsync(string baseUrl, int width = 1280, int height = 860)
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = baseUrl, ViewportSize = new ViewportSize { Width = width, Height = height }, ServiceWorkers = ServiceWorkerPolicy.Block,
        });
        context.SetDefaultTimeout(30_000);
        return await context.NewPageAsync();
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Browser.CloseAsync();
        }
        finally
        {
            Playwright.Dispose();
        }
    }
}
