using System.Net;
using System.Net.Http.Json;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// The dashboard's sign-in against a real hub: an API token exchanged for an HttpOnly, SameSite=Strict session cookie;
/// changing requests by cookie need the session's CSRF header; Bearer callers are unaffected; revoking the token or
/// signing out ends the session; a bad token is told so.
/// </summary>
public sealed class DashboardSessionTests : IDisposable
{
    private readonly HubHarness _h = new();

    public void Dispose() => _h.Dispose();

    private string Token(string role, string name) =>
        HubHarness.Json(_h.Api.PostAsJsonAsync("/api/tokens", new { role, name }).Result).GetProperty("token").GetString()!;

    /// <summary>A browser-like client: keeps cookies, sends no Authorization header.</summary>
    private HttpClient Browser() => new(new HttpClientHandler { CookieContainer = new CookieContainer() }) { BaseAddress = new Uri(_h.HubUrl) };

    private static async Task<string> SignIn(HttpClient browser, string token, string expectRole)
    {
        var response = await browser.PostAsJsonAsync("/api/session", new { token });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var cookie = Assert.Single(response.Headers.GetValues("Set-Cookie"));
        Assert.StartsWith("edgeml_session=ses_", cookie, StringComparison.Ordinal);
        Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("samesite=strict", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("path=/", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("secure", cookie, StringComparison.OrdinalIgnoreCase); // plain HTTP on loopback
        var json = HubHarness.Json(response);
        Assert.Equal(expectRole, json.GetProperty("role").GetString());
        return json.GetProperty("csrf").GetString()!;
    }

    [Fact]
    public async Task A_signed_in_viewer_reads_with_the_cookie_and_a_bad_token_is_told_so()
    {
        _h.StartHub();
        using var browser = Browser();
        Assert.Equal(HttpStatusCode.Unauthorized, (await browser.GetAsync("/api/devices")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await browser.GetAsync("/api/session")).StatusCode);

        var bad = await browser.PostAsJsonAsync("/api/session", new { token = "view_not-a-token" });
        Assert.Equal(HttpStatusCode.Unauthorized, bad.StatusCode);
        Assert.Contains("not known, revoked or expired", HubHarness.Json(bad).GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.False(bad.Headers.Contains("Set-Cookie"));

        var csrf = await SignIn(browser, Token("viewer", "field-eng"), "viewer");
        Assert.Equal(HttpStatusCode.OK, (await browser.GetAsync("/api/devices")).StatusCode);
        var who = HubHarness.Json(await browser.GetAsync("/api/session"));
        Assert.Equal("field-eng", who.GetProperty("name").GetString());
        Assert.Equal(csrf, who.GetProperty("csrf").GetString());

        // A viewer with a valid CSRF header still may not change anything.
        using var enroll = new HttpRequestMessage(HttpMethod.Post, "/api/devices") { Content = JsonContent.Create(new { id = "dev-x" }) };
        enroll.Headers.Add("X-CSRF-Token", csrf);
        Assert.Equal(HttpStatusCode.Forbidden, (await browser.SendAsync(enroll)).StatusCode);

        // The dashboard itself is served at / with a policy that loads nothing from elsewhere.
        var page = await browser.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("default-src 'self'", page.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_changing_request_by_cookie_needs_the_sessions_CSRF_header_and_revoking_the_token_ends_the_session()
    {
        _h.StartHub();
        using var browser = Browser();
        var csrf = await SignIn(browser, Token("operator", "night-shift"), "operator");

        async Task<HttpResponseMessage> Enroll(string id, string? header)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/api/devices") { Content = JsonContent.Create(new { id }) };
            if (header is not null) request.Headers.Add("X-CSRF-Token", header);
            return await browser.SendAsync(request);
        }

        var forged = await Enroll("dev-forged", null);
        Assert.Equal(HttpStatusCode.Forbidden, forged.StatusCode);
        Assert.Contains("X-CSRF-Token", HubHarness.Json(forged).GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Forbidden, (await Enroll("dev-forged", csrf + "x")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _h.Api.GetAsync("/api/devices/dev-forged")).StatusCode);

        Assert.Equal(HttpStatusCode.OK, (await Enroll("dev-ok", csrf)).StatusCode);
        // The audit trail names the token behind the session.
        Assert.Equal(HttpStatusCode.OK, (await _h.Api.GetAsync("/api/devices/dev-ok")).StatusCode);
        // Bearer callers need no CSRF header (the harness's client changes things with its operator token alone).
        Assert.True((await _h.Api.PostAsJsonAsync("/api/devices", new { id = "dev-bearer" })).IsSuccessStatusCode);

        // Revoking the token ends its session at once.
        Assert.True((await _h.Api.PostAsync("/api/tokens/night-shift/revoke", null)).IsSuccessStatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await browser.GetAsync("/api/devices")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await browser.GetAsync("/api/session")).StatusCode);

        // Sign-out: needs the header, then the cookie no longer works.
        var csrf2 = await SignIn(browser, Token("viewer", "day-shift"), "viewer");
        Assert.Equal(HttpStatusCode.Forbidden, (await browser.DeleteAsync("/api/session")).StatusCode);
        using var signOut = new HttpRequestMessage(HttpMethod.Delete, "/api/session");
        signOut.Headers.Add("X-CSRF-Token", csrf2);
        Assert.Equal(HttpStatusCode.NoContent, (await browser.SendAsync(signOut)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await browser.GetAsync("/api/devices")).StatusCode);
    }
}
