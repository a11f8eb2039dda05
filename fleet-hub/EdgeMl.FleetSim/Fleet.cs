using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace EdgeMl.FleetSim;

/// <summary>Many <see cref="SimDevice"/>s: enrolled through the hub's API like real devices, connected, and driven.</summary>
public sealed class Fleet : IAsyncDisposable
{
    private readonly HttpClient _http;
    private readonly Uri _broker;

    public Fleet(Uri hub, string operatorToken, Uri broker)
    {
        _broker = broker;
        _http = new HttpClient { BaseAddress = hub, Timeout = TimeSpan.FromSeconds(60) };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", operatorToken);
    }

    public List<SimDevice> Devices { get; } = [];

    /// <summary>Registers and enrolls <paramref name="count"/> devices (operator call + the device's own call), <paramref name="parallel"/> at a time.</summary>
    public async Task EnrollAsync(string prefix, int count, int parallel, CancellationToken ct)
    {
        var result = new SimDevice[count];
        await Parallel.ForAsync(0, count, new ParallelOptions { MaxDegreeOfParallelism = parallel, CancellationToken = ct }, async (i, token) =>
        {
            var id = $"{prefix}{i:D5}";
            using var reg = await _http.PostAsJsonAsync("/api/devices", new { id, group = prefix.TrimEnd('-') }, token).ConfigureAwait(false);
            await EnsureAsync(reg, $"registering {id}", token).ConfigureAwait(false);
            var ticket = await reg.Content.ReadFromJsonAsync<JsonElement>(token).ConfigureAwait(false);
            using var claim = await _http.PostAsJsonAsync("/api/enroll", new { token = ticket.GetProperty("token").GetString() }, token).ConfigureAwait(false);
            await EnsureAsync(claim, $"enrolling {id}", token).ConfigureAwait(false);
            var creds = await claim.Content.ReadFromJsonAsync<JsonElement>(token).ConfigureAwait(false);
            result[i] = new SimDevice(id, creds.GetProperty("password").GetString()!);
        }).ConfigureAwait(false);
        Devices.AddRange(result);
    }

    /// <summary>A refused call, with the hub's own error text (its JSON <c>error</c>) in the message.</summary>
    /// <exception cref="HttpRequestException">The hub answered with a status other than 2xx.</exception>
    public static async Task EnsureAsync(HttpResponseMessage response, string what, CancellationToken ct)
    {
        if (response.IsSuccessStatusCode) return;
        var body = await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
        string? error = null;
        try
        {
            error = JsonDocument.Parse(body).RootElement.TryGetProperty("error", out var e) ? e.GetString() : null;
        }
        catch (JsonException)
        {
        }

        throw new HttpRequestException($"{what}: the hub answered {(int)response.StatusCode} {response.ReasonPhrase}{(error is null ? "" : $": {error}")}");
    }

    public Task ConnectAsync(int parallel, CancellationToken ct) =>
        Parallel.ForEachAsync(Devices, new ParallelOptions { MaxDegreeOfParallelism = parallel, CancellationToken = ct },
            async (d, token) => await d.ConnectAsync(_broker, token).ConfigureAwait(false));

    /// <summary>Every device sends telemetry batches back to back (each waits for its PUBACK) until <paramref name="ct"/> ends.</summary>
    public Task FloodAsync(int batch, CancellationToken ct) =>
        Task.WhenAll(Devices.Select(async d =>
        {
            try
            {
                while (!ct.IsCancellationRequested) await d.SendTelemetryAsync(batch, ct).ConfigureAwait(false);
            }
            catch (Exception) when (ct.IsCancellationRequested)
            {
                // MQTTnet reports a cancelled publish as a time-out; either way the flood is over.
            }
        }));

    /// <summary>
    /// Open loop: every device sends a batch of <paramref name="batch"/> records every <paramref name="interval"/>
    /// (phases spread at random), whatever the hub's answers do — a fixed offered load, for latency under it.
    /// </summary>
    public Task PacedAsync(int batch, TimeSpan interval, CancellationToken ct) =>
        Task.WhenAll(Devices.Select(async d =>
        {
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * interval.TotalMilliseconds), ct).ConfigureAwait(false);
                using var timer = new PeriodicTimer(interval);
                do
                {
                    await d.SendTelemetryAsync(batch, ct).ConfigureAwait(false);
                }
                while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false));
            }
            catch (Exception) when (ct.IsCancellationRequested)
            {
            }
        }));

    /// <summary>
    /// Every device reports health every <paramref name="every"/> (first report at a random offset) until
    /// <paramref name="stop"/> ends; a report already sent waits for its PUBACK unless <paramref name="abort"/> ends.
    /// </summary>
    public Task HealthLoopAsync(TimeSpan every, CancellationToken stop, CancellationToken abort = default) =>
        Task.WhenAll(Devices.Select(async d =>
        {
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * every.TotalMilliseconds), stop).ConfigureAwait(false);
                using var timer = new PeriodicTimer(every);
                do
                {
                    await d.SendHealthAsync(abort == default ? stop : abort).ConfigureAwait(false);
                }
                while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false));
            }
            catch (Exception e) when (e is OperationCanceledException && stop.IsCancellationRequested || (abort == default ? stop : abort).IsCancellationRequested)
            {
                // Stopped between reports, or cut short (MQTTnet reports a cancelled publish as a time-out).
            }
        }));

    public async Task<JsonElement> IngestAsync() => await _http.GetFromJsonAsync<JsonElement>("/api/ingest").ConfigureAwait(false);

    public async Task<int> OnlineAsync(string group)
    {
        var list = await _http.GetFromJsonAsync<JsonElement>($"/api/devices?group={group}&status=online").ConfigureAwait(false);
        return list.GetArrayLength();
    }

    public async Task<long> RecordsAsync(string device)
    {
        var d = await _http.GetFromJsonAsync<JsonElement>($"/api/devices/{device}").ConfigureAwait(false);
        return d.GetProperty("records").GetInt64();
    }

    public async ValueTask DisposeAsync()
    {
        await Parallel.ForEachAsync(Devices, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (d, _) => await d.DisposeAsync().ConfigureAwait(false)).ConfigureAwait(false);
        _http.Dispose();
    }
}
