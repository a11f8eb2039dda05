using System.Globalization;
using System.Text.Json.Nodes;

using EdgeMl.CommandLine;

namespace EdgeMl.Cli;

/// <summary><c>edgeml rollout …</c>, <c>edgeml rollback GROUP</c> and <c>edgeml audit</c>.</summary>
public static class RolloutCommands
{
    public static async Task StartAsync(ParsedArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var model = args.Positional.Count == 1 ? args.Positional[0] : throw new UsageException("rollout start needs NAME@VERSION");
        var body = new JsonObject { ["model"] = model };
        var group = args.Get("to");
        var devices = args.Get("devices");
        if ((group is null) == (devices is null)) throw new UsageException("rollout start needs exactly one of --to GROUP and --devices ID,…");
        if (group is not null) body["group"] = group;
        if (devices is not null) body["devices"] = new JsonArray(devices.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(d => (JsonNode)d).ToArray());
        if (args.Get("waves") is { } waves) body["waves"] = waves;
        var gates = args.All("gate").ToList();
        if (gates.Count > 0) body["gates"] = new JsonArray(gates.Select(g => (JsonNode)g).ToArray());
        if (args.Get("soak") is { } soak) body["soak"] = soak;
        if (args.Get("watch") is { } watch) body["watch"] = watch;
        if (args.Get("offline-timeout") is { } offline) body["offlineTimeout"] = offline;
        var r = await hub.PostAsync("/api/rollouts", body).ConfigureAwait(false);
        if (output.Json(r)) return;
        output.Line($"rollout {S(r, "id")}: {S(r, "model")}@{S(r, "version")} to {S(r, "target")}, {r["devices"]!.AsArray().Count} device(s) in {r["waves"]!.AsArray().Count} wave(s)");
        Waves(r, output);
        output.Line($"follow it: edgeml rollout status {S(r, "id")}");
    }

    public static async Task StatusAsync(ParsedArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        if (args.Positional.Count == 0)
        {
            var all = await hub.GetAsync("/api/rollouts").ConfigureAwait(false);
            if (output.Json(all)) return;
            output.Table(["ROLLOUT", "MODEL", "TARGET", "STATE", "WAVE", "DEVICES", "ACTIVE", "BY", "STARTED"], all.AsArray().Select(r => new[]
            {
                S(r, "id"), $"{S(r, "model")}@{S(r, "version")}", S(r, "target"), S(r, "state"), $"{N(r, "wave") + 1}/{r!["waves"]!.AsArray().Count}",
                r["devices"]!.AsArray().Count.ToString(CultureInfo.InvariantCulture),
                r["devices"]!.AsArray().Count(d => S(d, "phase") == "active").ToString(CultureInfo.InvariantCulture), S(r, "createdBy"), When(r["createdAt"]),
            }).ToList());
            return;
        }

        var id = args.Positional[0];
        var ro = await hub.GetAsync($"/api/rollouts/{Uri.EscapeDataString(id)}").ConfigureAwait(false);
        if (output.Json(ro)) return;
        output.Pairs([
            ("rollout", S(ro, "id")), ("model", $"{S(ro, "model")}@{S(ro, "version")}"), ("target", S(ro, "target")),
            ("state", S(ro, "state") + (S(ro, "reason") is { } why ? $" — {why}" : "")),
            ("wave", $"{N(ro, "wave") + 1} of {ro["waves"]!.AsArray().Count}{(S(ro, "stage") is { } st ? $" ({st})" : "")}"),
            ("gates", ro["gates"]!.AsArray().Count == 0 ? "none" : string.Join("  ", ro["gates"]!.AsArray().Select(g => S(g, "text")))),
            ("soak", $"{N(ro, "soakSeconds")} s"), ("started", $"{When(ro["createdAt"])} by {S(ro, "createdBy")}"),
        ]);
        output.Line("");
        Waves(ro, output);
        output.Line("");
        output.Table(["DEVICE", "WAVE", "FROM", "PHASE", "AGREEMENT", "LATENCY ×", "ERRORS", "WINDOWS", "REASON"], ro["devices"]!.AsArray().Select(d =>
        {
            var sh = d!["shadow"];
            return new[]
            {
                S(d, "id"), (N(d, "wave") + 1).ToString(CultureInfo.InvariantCulture), S(d, "from") ?? "-", S(d, "phase") + (d["confirmed"]?.GetValue<bool>() == true ? " ✓" : ""),
                sh is null ? "-" : N(sh, "agreement").ToString("P1", CultureInfo.InvariantCulture), sh is null ? "-" : N(sh, "latencyRatio").ToString("0.00", CultureInfo.InvariantCulture),
                sh is null ? "-" : N(sh, "errors").ToString(CultureInfo.InvariantCulture), sh is null ? "-" : N(sh, "runs").ToString(CultureInfo.InvariantCulture), S(d, "reason") ?? "",
            };
        }).ToList());
    }

    /// <summary>One line per wave: its share, devices, the gate figures and the outcome.</summary>
    private static void Waves(JsonNode r, Output output)
    {
        var waves = r["waves"]!.AsArray();
        var devices = r["devices"]!.AsArray();
        var results = r["results"]?.AsArray() ?? [];
        output.Table(["WAVE", "SHARE", "DEVICES", "DONE", "GATES", "OUTCOME"], waves.Select((w, i) =>
        {
            var mine = devices.Where(d => N(d, "wave") == i).ToList();
            var result = results.LastOrDefault(x => N(x, "wave") == i);
            var gates = result?["gates"]?.AsArray().Select(g => $"{S(g, "gate")}={N(g, "value").ToString("0.####", CultureInfo.InvariantCulture)} {(g!["pass"]!.GetValue<bool>() ? "ok" : "FAIL")}");
            return new[]
            {
                (i + 1).ToString(CultureInfo.InvariantCulture), $"{N(w, null)}%", mine.Count.ToString(CultureInfo.InvariantCulture),
                mine.Count(d => S(d, "phase") == "active").ToString(CultureInfo.InvariantCulture),
                gates is null ? "-" : string.Join("; ", gates) is { Length: > 0 } g ? g : "none",
                S(result, "outcome") ?? (N(r, "wave") == i && S(r, "state") == "running" ? "in progress" : N(r, "wave") < i ? "waiting" : "-"),
            };
        }).ToList());
    }

    public static async Task ControlAsync(ParsedArgs args, Output output, string action)
    {
        using var hub = HubClient.From(args);
        var id = args.Positional.Count == 1 ? args.Positional[0] : throw new UsageException($"rollout {action} needs the rollout id");
        var r = await hub.PostAsync($"/api/rollouts/{Uri.EscapeDataString(id)}/{action}", new JsonObject()).ConfigureAwait(false);
        if (output.Json(r)) return;
        output.Line($"rollout {id}: {S(r, "state")}{(S(r, "reason") is { } why ? $" ({why})" : "")}");
    }

    public static async Task RollbackAsync(ParsedArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var group = args.Positional.Count == 1 ? args.Positional[0] : throw new UsageException("rollback needs GROUP");
        var sent = await hub.PostAsync("/api/rollback", new JsonObject { ["group"] = group }).ConfigureAwait(false);
        if (output.Json(sent)) return;
        var list = sent.AsArray();
        output.Line(list.Count == 0 ? $"no device in group {group} has a previous model to go back to" : $"{list.Count} device(s) of {group} sent back to their previous model:");
        foreach (var s in list) output.Line($"  {S(s, "device")} → {S(s, "to")}");
    }

    public static async Task AuditAsync(ParsedArgs args, Output output, TextWriter stdout)
    {
        using var hub = HubClient.From(args);
        var query = new List<string>();
        if (args.Get("since") is { } since) query.Add($"since={Uri.EscapeDataString(Time(since, "--since").ToString("O", CultureInfo.InvariantCulture))}");
        if (args.Get("action") is { } action) query.Add($"action={Uri.EscapeDataString(action)}");
        if (args.Get("device") is { } device) query.Add($"device={Uri.EscapeDataString(device)}");
        if (args.Get("rollout") is { } rollout) query.Add($"subject={Uri.EscapeDataString("rollout " + rollout)}");
        var csv = args.Has("csv");
        var file = args.Get("out");
        var path = "/api/audit" + (query.Count > 0 ? "?" + string.Join('&', query) : "");
        if (csv)
        {
            var text = await hub.GetTextAsync(path + (query.Count > 0 ? "&" : "?") + "format=csv").ConfigureAwait(false);
            if (file is not null) await File.WriteAllTextAsync(file, text).ConfigureAwait(false);
            else await stdout.WriteAsync(text).ConfigureAwait(false);
            if (file is not null) output.Line($"wrote {text.Count(c => c == '\n') - 1} entries to {file}");
            return;
        }

        var entries = await hub.GetAsync(path).ConfigureAwait(false);
        if (file is not null)
        {
            await File.WriteAllTextAsync(file, entries.ToJsonString()).ConfigureAwait(false);
            output.Line($"wrote {entries.AsArray().Count} entries to {file}");
            return;
        }

        if (output.Json(entries)) return;
        output.Table(["WHEN", "WHO", "ACTION", "SUBJECT", "DEVICE", "DETAILS"], entries.AsArray().Select(e => new[]
        {
            When(e!["at"]), S(e, "actor"), S(e, "action"), S(e, "subject"), S(e, "device") ?? "", S(e, "details"),
        }).ToList());
    }

    /// <summary>
    /// The time an option like <c>--since</c> names: a timestamp (UTC without an offset: <c>2026-11-30T06:00</c>, <c>06:00</c>
    /// today), or "24h", "30m", "7d" ago (<see cref="EdgeMl.Protocol.Text.Durations"/>); else a usage error naming <paramref name="option"/>.
    /// </summary>
    internal static DateTimeOffset Time(string text, string option)
    {
        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at)) return at;
        return EdgeMl.Protocol.Text.Durations.TryParse(text, out var span, out var error)
            ? DateTimeOffset.UtcNow - span
            : throw new UsageException($"{option}: {error}, or a time");
    }

    private static string? S(JsonNode? node, string key) => node?[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : node?[key]?.ToJsonString();

    private static double N(JsonNode? node, string? key)
    {
        var n = key is null ? node : node?[key];
        return n is JsonValue v && v.TryGetValue<double>(out var d) ? d : double.NaN;
    }

    private static string When(JsonNode? t) =>
        t is JsonValue jv && jv.TryGetValue<DateTimeOffset>(out var at) ? at.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) : "-";
}
