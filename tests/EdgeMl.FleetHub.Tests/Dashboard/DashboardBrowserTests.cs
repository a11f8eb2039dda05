using System.Text.Json;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace EdgeMl.FleetHub.Tests.Dashboard;

/// <summary>
/// The dashboard in real headless Chromium against a real hub and real agent processes: sign-in, the fleet table, a
/// killed agent turning offline without a reload, charts drawn from the health history the API holds, a viewer
/// without actions, forged requests refused, an operator's desired model moving the device's phase, a bad token, and
/// screenshots of every page at desktop and phone width (artifacts/screenshots/). Waits are Playwright's expectations.
/// </summary>
public sealed class DashboardBrowserTests(DashboardFixture f) : IClassFixture<DashboardFixture>
{
    static DashboardBrowserTests() => SetDefaultExpectTimeout(30_000);

    private async Task<IPage> SignedIn(string token, string role, int width = 1280, int height = 860)
    {
        var page = await f.Browser.NewPageAsync(f.Hub.HubUrl, width, height);
        await page.GotoAsync("/");
        await page.GetByTestId("token").FillAsync(token);
        await page.GetByTestId("signin").ClickAsync();
        await Expect(page.GetByTestId("who")).ToContainTextAsync(role);
        return page;
    }

    private static ILocator Row(IPage page, string device) => page.Locator($"table.devices tr[data-device='{device}']");

    /// <summary>POSTs from inside the page, as a forged form or script would: the session cookie goes along, the CSRF header as given.</summary>
    private static Task<JsonElement> PostFromPage(IPage page, string path, string? csrf) => page.EvaluateAsync<JsonElement>("""
        async ([path, csrf]) => {
          const headers = { 'Content-Type': 'application/json' };
          if (csrf !== null) headers['X-CSRF-Token'] = csrf;
          const r = await fetch(path, { method: 'POST', headers, body: JSON.stringify({ id: 'forged-1' }) });
          return { status: r.status, body: await r.text() };
        }
        """, new object?[] { path, csrf });

    [Fact]
    public async Task A_viewer_sees_the_fleet_a_killed_agent_turns_offline_without_a_reload_and_no_action_is_offered()
    {
        var page = await SignedIn(f.ViewerToken, "viewer");
        await Expect(Row(page, "cell-1")).ToHaveAttributeAsync("data-presence", "online");
        await Expect(page.GetByTestId("live")).ToHaveAttributeAsync("data-mode", "sse"); // the hub's event stream, not polling
        await Expect(page.GetByTestId("count-never").Locator("b")).ToHaveTextAsync("0");

        var agent = f.StartAgent("cell-2", "line-2");
        await Expect(Row(page, "cell-2")).ToHaveAttributeAsync("data-presence", "online");
        var reloads = 0;
        page.Load += (_, _) => reloads++;
        agent.Kill(); // kill -9: the broker publishes its last will
        await Expect(Row(page, "cell-2")).ToHaveAttributeAsync("data-presence", "offline");
        await Expect(page.GetByTestId("count-offline").Locator("b")).ToHaveTextAsync(new System.Text.RegularExpressions.Regex("^[1-9][0-9]*$"));
        Assert.Equal(0, reloads);

        // Read-only: no action on the device page or the rollouts page.
        await page.GotoAsync("/#/device/cell-1");
        await Expect(page.GetByTestId("device-id")).ToContainTextAsync("cell-1");
        await Expect(page.GetByTestId("operator-actions")).ToHaveCountAsync(0);
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Revoke…" })).ToHaveCountAsync(0);
        await page.GotoAsync("/#/rollouts");
        await Expect(page.Locator("main[data-rendered='rollouts']")).ToHaveCountAsync(1);
        await Expect(page.GetByTestId("start-rollout")).ToHaveCountAsync(0);

        // A request forged from the page: refused, with or without a made-up CSRF header.
        foreach (var csrf in new string?[] { null, "made-up" })
        {
            var forged = await PostFromPage(page, "/api/devices", csrf);
            Assert.Equal(403, forged.GetProperty("status").GetInt32());
            Assert.Contains("X-CSRF-Token", forged.GetProperty("body").GetString(), StringComparison.Ordinal);
        }

        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await f.Hub.Api.GetAsync("/api/devices/forged-1")).StatusCode);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task The_device_pages_charts_are_drawn_from_the_health_history_the_API_holds()
    {
        // The charts draw the hub's buckets (GET /api/devices/{id}/health/series, 600 over the range): on the 15 min range a bucket
        // is 1.5 s, so ten reports a second apart make several points.
        HubHarness.Until(() => f.Hub.Get("/api/devices/cell-1/health?limit=10").GetArrayLength() >= 10, "ten health reports from cell-1");
        var page = await SignedIn(f.ViewerToken, "viewer");
        await page.EvaluateAsync("sessionStorage.setItem('edgeml.range', '15m')");
        await page.GotoAsync("/#/device/cell-1");
        foreach (var chart in new[] { "cpu", "memory", "rss", "disk", "rate", "latency", "dropped", "outbox", "temperature" })
        {
            await Expect(page.GetByTestId($"chart-{chart}")).ToBeVisibleAsync();
        }

        await Expect(page.Locator("[data-testid='chart-cpu'][data-drawn='true'] canvas")).ToHaveCountAsync(1);
        await Expect(page.Locator("[data-testid='chart-latency'][data-drawn='true'] canvas")).ToHaveCountAsync(1);
        // What the chart was drawn from ([times, values]), read from the uPlot instance; then the API's history.
        var drawn = await page.EvaluateAsync<JsonElement>("() => { const p = document.querySelector('[data-testid=chart-rss]').plot; return [Array.from(p.data[0]), Array.from(p.data[1])]; }");
        var times = drawn[0].EnumerateArray().Select(t => t.GetDouble()).ToList();
        var values = drawn[1].EnumerateArray().Select(v => v.ValueKind == JsonValueKind.Null ? (double?)null : v.GetDouble()).ToList();
        Assert.True(times.Count >= 3, $"the RSS chart has {times.Count} points");
        var api = f.Hub.Get("/api/devices/cell-1/health?limit=10000").EnumerateArray()
            .ToDictionary(r => r.GetProperty("at").GetInt64() / 1000.0, r => r.GetProperty("data").GetProperty("system").GetProperty("processRssMb").GetDouble());
        for (var i = 0; i < times.Count; i++)
        {
            Assert.True(api.TryGetValue(times[i], out var rss), $"point {i} at {times[i]} is not a health report the API has");
            Assert.Equal(rss, values[i]);
        }

        Assert.Equal(times.Order().ToList(), times);
        Assert.All(values, v => Assert.True(v > 0));
        // The hub's downsampled buckets: the band around the line is each bucket's min and max (data[2], data[3]).
        var band = await page.EvaluateAsync<JsonElement>("() => { const p = document.querySelector('[data-testid=chart-rss]').plot; return [p.data.length, Array.from(p.data[2]), Array.from(p.data[3])]; }");
        Assert.Equal(4, band[0].GetInt32());
        var (max, min) = (band[1].EnumerateArray().Select(v => v.GetDouble()).ToList(), band[2].EnumerateArray().Select(v => v.GetDouble()).ToList());
        for (var i = 0; i < times.Count; i++) Assert.True(min[i] <= values[i] && values[i] <= max[i], $"point {i}: {values[i]} is not within [{min[i]}, {max[i]}]");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task The_presence_bar_shows_the_known_state_before_the_first_change_not_unknown()
    {
        // cell-1 was enrolled and came online during the fixture: before that first change it was not seen, then online to now.
        var page = await SignedIn(f.ViewerToken, "viewer");
        await page.GotoAsync("/#/device/cell-1");
        var segments = page.GetByTestId("presence-timeline").Locator("span.seg");
        await Expect(segments.Last).ToHaveAttributeAsync("data-presence", "online");
        await Expect(segments.First).ToHaveAttributeAsync("data-presence", "neverSeen");
        Assert.DoesNotContain("unknown", await segments.EvaluateAllAsync<string[]>("els => els.map(e => e.dataset.presence ?? 'unknown')"));

        // A device that has been online for longer than the bar's day, whose changes the hub no longer keeps: no change at
        // all in the answer (as a hub gives it then), and the whole day is its presence now, not "unknown".
        await page.RouteAsync("**/api/devices/cell-1/presence*", route => route.FulfillAsync(new RouteFulfillOptions { ContentType = "application/json", Body = "[]" }));
        await page.ReloadAsync();
        await Expect(segments).ToHaveCountAsync(1);
        await Expect(segments.First).ToHaveAttributeAsync("data-presence", "online");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task An_operator_sets_a_desired_model_and_the_devices_phase_moves_on_the_page()
    {
        var page = await SignedIn(f.OperatorToken, "operator");
        await page.GotoAsync("/#/device/cell-1");
        await Expect(page.GetByTestId("operator-actions")).ToBeVisibleAsync();
        await Expect(page.GetByTestId("active-model")).ToHaveTextAsync("vibration-fault@1.0.0");

        // Even an operator's page refuses a changing request without the session's CSRF header.
        var forged = await PostFromPage(page, "/api/devices", null);
        Assert.Equal(403, forged.GetProperty("status").GetInt32());

        await page.GetByTestId("desired-model").SelectOptionAsync("vibration-fault@1.1.0");
        await page.GetByTestId("set-desired").ClickAsync();
        await Expect(page.GetByTestId("action-result")).ToContainTextAsync("vibration-fault@1.1.0");
        // The agent downloads, verifies, stages and activates 1.1.0; the page follows without a reload.
        try
        {
            await Expect(page.GetByTestId("phase-model")).ToHaveTextAsync("vibration-fault@1.1.0", new() { Timeout = 20_000 });
        }
        catch (PlaywrightException)
        {
            // As ModelUpdateTests does: nothing about 1.1.0 reported yet, so the operator says it again (it is idempotent).
            await page.GetByTestId("set-desired").ClickAsync();
            await Expect(page.GetByTestId("phase-model")).ToHaveTextAsync("vibration-fault@1.1.0", new() { Timeout = 60_000 });
        }

        await Expect(page.GetByTestId("update-phase")).ToHaveTextAsync("active", new() { Timeout = 90_000 });
        await Expect(page.GetByTestId("active-model")).ToHaveTextAsync("vibration-fault@1.1.0");
        var audit = f.Hub.Get("/api/audit?device=cell-1").EnumerateArray().ToList();
        Assert.Contains(audit, a => a.GetProperty("action").GetString() == "device.desired" && a.GetProperty("actor").GetString() == "shift-lead");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task An_operator_revokes_a_device_only_after_confirming()
    {
        f.StartAgent("cell-4", "line-4");
        HubHarness.Until(() => f.Hub.Device("cell-4").GetProperty("presence").GetString() == "online", "cell-4 online");
        var page = await SignedIn(f.OperatorToken, "operator");
        await page.GotoAsync("/#/device/cell-4");
        await Expect(page.GetByTestId("enrollment")).ToHaveTextAsync("enrolled");

        var answer = false;
        var asked = new List<string>();
        page.Dialog += async (_, dialog) =>
        {
            asked.Add(dialog.Message);
            if (answer) await dialog.AcceptAsync();
            else await dialog.DismissAsync();
        };
        await page.GetByTestId("revoke").ClickAsync();
        Assert.Contains("Revoke cell-4?", Assert.Single(asked), StringComparison.Ordinal);
        Assert.Equal("enrolled", f.Hub.Device("cell-4").GetProperty("enrollment").GetString()); // dismissed: nothing happened

        answer = true;
        await page.GetByTestId("revoke").ClickAsync();
        await Expect(page.GetByTestId("action-result")).ToContainTextAsync("cell-4 revoked");
        await Expect(page.GetByTestId("enrollment")).ToHaveTextAsync("revoked");
        await Expect(page.GetByTestId("revoke")).ToBeDisabledAsync();
        Assert.Equal("revoked", f.Hub.Device("cell-4").GetProperty("enrollment").GetString());
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task A_bad_token_is_told_so_on_the_sign_in_page()
    {
        var page = await f.Browser.NewPageAsync(f.Hub.HubUrl);
        await page.GotoAsync("/");
        await page.GetByTestId("token").FillAsync("view_this-is-not-a-token");
        await page.GetByTestId("signin").ClickAsync();
        await Expect(page.GetByTestId("error")).ToContainTextAsync("not known, revoked or expired");
        await Expect(page.GetByTestId("who")).ToBeHiddenAsync();
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Every_page_is_screenshotted_at_desktop_and_phone_width_and_fits_a_phone()
    {
        // A rollout for the detail page, started from the page's form by the operator, to a device of its own.
        f.StartAgent("cell-3", "line-3");
        HubHarness.Until(() => f.Hub.Device("cell-3").GetProperty("presence").GetString() == "online", "cell-3 online");
        var start = await SignedIn(f.OperatorToken, "operator");
        await start.GotoAsync("/#/rollouts");
        await start.GetByTestId("start-model").SelectOptionAsync("vibration-fault@1.1.0");
        await start.GetByTestId("start-group").FillAsync("line-3");
        await start.GetByTestId("start-waves").FillAsync("100%");
        await start.GetByTestId("start-rollout").ClickAsync();
        await Expect(start.GetByTestId("rollout-state")).ToBeVisibleAsync();
        await Expect(start.Locator("[data-testid='rollout-devices'] tr[data-device='cell-3']")).ToHaveCountAsync(1);
        var rollout = start.Url[(start.Url.IndexOf("#/rollouts/", StringComparison.Ordinal) + "#/rollouts/".Length)..];
        await start.Context.CloseAsync();

        foreach (var (size, width, height) in new[] { ("desktop", 1280, 860), ("phone", 390, 844) })
        {
            var page = await f.Browser.NewPageAsync(f.Hub.HubUrl, width, height);
            await page.GotoAsync("/");
            await Expect(page.GetByTestId("token")).ToBeVisibleAsync();
            await page.ScreenshotAsync(new() { Path = Path.Combine(DashboardFixture.Screenshots, $"signin-{size}.png") });
            await page.GetByTestId("token").FillAsync(f.OperatorToken);
            await page.GetByTestId("signin").ClickAsync();
            foreach (var (name, hash, rendered) in new[]
                     {
                         ("fleet", "#/fleet", "fleet"), ("device", "#/device/cell-1", "device"), ("rollouts", "#/rollouts", "rollouts"),
                         ("rollout", $"#/rollouts/{rollout}", "rollout"), ("models", "#/models", "models"), ("alerts", "#/alerts", "alerts"),
                     })
            {
                await page.GotoAsync($"/{hash}");
                await Expect(page.Locator($"main[data-rendered='{rendered}']")).ToHaveCountAsync(1);
                if (name == "device") await Expect(page.Locator("[data-testid='chart-cpu'][data-drawn='true']")).ToHaveCountAsync(1);
                await page.ScreenshotAsync(new() { Path = Path.Combine(DashboardFixture.Screenshots, $"{name}-{size}.png"), FullPage = true });
                // Wide tables scroll in their own box; the page itself never needs sideways scrolling.
                var overflow = await page.EvaluateAsync<int>("() => document.documentElement.scrollWidth - window.innerWidth");
                Assert.True(overflow <= 0, $"{name} at {width} px is {overflow} px wider than the screen");
            }

            await page.Context.CloseAsync();
        }
    }
}
