using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;

namespace EdgeMl.FleetSim;

/// <summary>A hub process for benchmarks: started quiet (warnings only, server GC), and waited for until it answers.</summary>
public static class HubProcess
{
    public static Process Start(string dll, string data, int mqtt, Uri url, params string[] extra)
    {
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { dll, "--Data", data, "--MqttPort", mqtt.ToString(CultureInfo.InvariantCulture), "--urls", url.ToString().TrimEnd('/') }.Concat(extra))
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["Logging__LogLevel__Default"] = "Warning";
        psi.Environment["DOTNET_gcServer"] = "1";
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"hub: {e.Data}"); }; // warnings and errors only
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"hub: {e.Data}"); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    /// <summary>Waits until the hub answers with its bootstrap operator token; returns the token.</summary>
    public static async Task<string> WaitAsync(string data, Uri url, CancellationToken ct)
    {
        var tokenFile = Path.Combine(data, "operator.token");
        using var client = new HttpClient { BaseAddress = url };
        for (var i = 0; i < 600; i++)
        {
            if (File.Exists(tokenFile))
            {
                var token = (await File.ReadAllTextAsync(tokenFile, ct).ConfigureAwait(false)).Trim();
                client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
                try
                {
                    if ((await client.GetAsync("/api/ingest", ct).ConfigureAwait(false)).IsSuccessStatusCode) return token;
                }
                catch (HttpRequestException)
                {
                }
            }

            await Task.Delay(100, ct).ConfigureAwait(false);
        }

        throw new TimeoutException("the hub did not start");
    }
}
