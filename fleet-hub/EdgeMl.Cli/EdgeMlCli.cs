using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EdgeMl.Cli;

/// <summary><c>edgeml</c>: the operator's tool. Errors are one line on stderr: exit 1 (the hub said no), 2 (usage).</summary>
public static class EdgeMlCli
{
    private static readonly IReadOnlySet<string> Flags = new HashSet<string> { "json", "help", "csv", "per-tensor" };

    public const string Usage = """
        edgeml — the operator's tool for an EdgeMl fleet hub

        usage:
          edgeml login --hub URL --token TOKEN            remember the hub and API token (~/.config/edgeml/login.json)
          edgeml devices enroll ID [--group G] [--tag K=V]… [--expires HOURS]
                                                          register a device; prints its one-time enrollment token
          edgeml devices list [--group G] [--status online|offline|pending|revoked] [--model NAME[@VERSION]] [--tag K[=V]]
          edgeml devices show ID                          one device: registry, presence, latest health
          edgeml devices revoke ID                        the device's credentials stop working; it is disconnected now
          edgeml tokens create [--role viewer|operator] [--name NAME] [--expires HOURS]
          edgeml tokens list                              name, role, created, expiry, state (active, expired, revoked)
          edgeml tokens revoke NAME                       the tokens called NAME stop working at once
          edgeml keys create NAME [--dir DIR]              an ECDSA P-256 signing key: NAME.key (private) and NAME.pub
          edgeml model sign PKG --key NAME.key [--out FILE]
          edgeml model verify PKG --trust NAME.pub|DIR …  exit 0 when signed by a trusted key
          edgeml model push PKG                           upload to the hub's registry (checked there: SHA-256, signature)
          edgeml model list                               the registry: versions, hashes, keys, who pushed
          edgeml model inspect FILE                       an .onnx or .edgepkg: inputs/outputs, opset, operators, parameters, quantization
          edgeml model quantize IN.onnx --calibration DATA --out OUT.onnx [--mode static|dynamic]
                                [--method minmax|percentile|entropy] [--activation-type uint8|int8] [--per-tensor] [--exclude NODE]…
                                [--min-cosine 0.99 | --max-accuracy-drop POINTS --labels L.npy] [--max-float-layers 16] [--threads 1] [--allow-slower]
                                                          int8 QDQ (static) or dynamic quantization; DATA: .npy, .npz, or CSV with --manifest
          edgeml model evaluate --reference FP32 --candidate INT8 --data DATA [--labels LABELS.npy]
                                                          size and latency ratio, top-1 agreement, errors, cosine, accuracy drop
          edgeml model package --model M.onnx --manifest TEMPLATE.json --out X.edgepkg [--reference DATA] [--name N] [--version V]
                                                          manifest checked against the model, SHA-256 filled in, drift baseline from DATA
          edgeml rollout start NAME@VERSION --to GROUP|--devices ID,… [--waves 5%,25%,100%] [--gate agreement>=0.95]…
                               [--soak 10m] [--watch 30s] [--offline-timeout 10m]
                                                          staged rollout: each wave shadows the model, gates decide, then it is activated
          edgeml rollout status [ID]                      all rollouts, or one: waves, gate figures, each device's phase
          edgeml rollout pause|resume|abort ID            abort sends every device it reached back to the model it had
          edgeml rollback GROUP                           every device of the group back to its previous model
          edgeml audit [--since 24h] [--action A] [--device ID] [--rollout ID] [--csv] [--out FILE]
                                                          who pushed, signed, started, paused, aborted, rolled back what; which device ran what
          edgeml drift show [--device ID | --group G] [--since 24h]
                                                          per feature: status, PSI, KS, Wasserstein, trend (neither: the fleet)

        every command: [--hub URL] [--token TOKEN] [--json]   (or EDGEML_HUB, EDGEML_TOKEN)
        """;

    public static async Task<int> MainAsync(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        if (argv.Length == 0 || argv[0] is "help" or "--help" or "-h")
        {
            await stdout.WriteLineAsync(Usage).ConfigureAwait(false);
            return argv.Length == 0 ? 2 : 0;
        }

        try
        {
            // Options may come anywhere (`edgeml --hub URL devices list`); the first words are the command.
            var args = new CliArgs(argv, Flags);
            var words = args.Positional.Count > 0 && args.Positional[0] is "devices" or "tokens" or "drift" or "keys" or "model" or "rollout" ? 2 : 1;
            var command = string.Join(' ', args.Positional.Take(words));
            args.Positional.RemoveRange(0, Math.Min(words, args.Positional.Count));
            var json = args.Has("json");
            var output = new Output(stdout, json);
            switch (command)
            {
                case "login": await LoginAsync(args, output).ConfigureAwait(false); break;
                case "devices enroll": await EnrollAsync(args, output).ConfigureAwait(false); break;
                case "devices list": await ListAsync(args, output).ConfigureAwait(false); break;
                case "devices show": await ShowAsync(args, output).ConfigureAwait(false); break;
                case "devices revoke": await RevokeAsync(args, output).ConfigureAwait(false); break;
                case "tokens create": await CreateTokenAsync(args, output).ConfigureAwait(false); break;
                case "tokens list": await ListTokensAsync(args, output).ConfigureAwait(false); break;
                case "tokens revoke": await RevokeTokenAsync(args, output).ConfigureAwait(false); break;
                case "drift show": await DriftAsync(args, output).ConfigureAwait(false); break;
                case "keys create": ModelCommands.CreateKey(args, output); break;
                case "model sign": ModelCommands.Sign(args, output); break;
                case "model verify": ModelCommands.Verify(args, output); break;
                case "model push": await ModelCommands.PushAsync(args, output, stderr).ConfigureAwait(false); break;
                case "model list": await ModelCommands.ListAsync(args, output).ConfigureAwait(false); break;
                case "model inspect": ToolchainCommands.Inspect(args, output); break;
                case "model quantize": ToolchainCommands.Quantize(args, output, stderr); break;
                case "model evaluate": ToolchainCommands.Evaluate(args, output, stderr); break;
                case "model package": ToolchainCommands.Package(args, output, stderr); break;
                case "rollout start": await RolloutCommands.StartAsync(args, output).ConfigureAwait(false); break;
                case "rollout status" or "rollout list": await RolloutCommands.StatusAsync(args, output).ConfigureAwait(false); break;
                case "rollout pause": await RolloutCommands.ControlAsync(args, output, "pause").ConfigureAwait(false); break;
                case "rollout resume": await RolloutCommands.ControlAsync(args, output, "resume").ConfigureAwait(false); break;
                case "rollout abort": await RolloutCommands.ControlAsync(args, output, "abort").ConfigureAwait(false); break;
                case "rollback": await RolloutCommands.RollbackAsync(args, output).ConfigureAwait(false); break;
                case "audit": await RolloutCommands.AuditAsync(args, output, stdout).ConfigureAwait(false); break;
                default: throw new UsageException($"unknown command '{command}'");
            }

            return 0;
        }
        catch (UsageException e)
        {
            await stderr.WriteLineAsync($"error: {e.Message}\n\n{Usage}").ConfigureAwait(false);
            return 2;
        }
        catch (HubException e)
        {
            await stderr.WriteLineAsync($"error: {e.Message}").ConfigureAwait(false);
            return 1;
        }
    }

    private static async Task LoginAsync(CliArgs args, Output output)
    {
        var hub = HubClient.ParseHub(args.Get("hub") ?? throw new UsageException("login needs --hub URL"));
        var token = args.Get("token") ?? throw new UsageException("login needs --token TOKEN (an operator's first token is in the hub's DATA/operator.token)");
        args.RejectUnknown(0);
        using (var client = new HubClient(hub, token))
        {
            await client.GetAsync("/api/devices").ConfigureAwait(false); // proves the token before it is saved
        }

        LoginFile.Write(new LoginFile.Login(hub.ToString(), token));
        output.Line($"logged in to {hub}; saved in {LoginFile.PathName}");
    }

    private static async Task EnrollAsync(CliArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var id = One(args, "devices enroll ID");
        var tags = new JsonObject();
        foreach (var t in args.All("tag"))
        {
            var eq = t.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0) throw new UsageException($"--tag '{t}' is not KEY=VALUE");
            tags[t[..eq]] = t[(eq + 1)..];
        }

        var body = new JsonObject { ["id"] = id, ["group"] = args.Get("group"), ["tags"] = tags };
        if (args.Get("expires") is { } hours) body["expiresHours"] = double.Parse(hours, CultureInfo.InvariantCulture);
        args.RejectUnknown(1);
        var ticket = await hub.PostAsync("/api/devices", body).ConfigureAwait(false);
        if (output.Json(ticket)) return;
        var token = ticket["token"]!.GetValue<string>();
        output.Line($"device '{id}' registered; its one-time enrollment token (valid until {ticket["expires"]!.GetValue<DateTimeOffset>():yyyy-MM-dd HH:mm} UTC):");
        output.Line("");
        output.Line($"  {token}");
        output.Line("");
        output.Line("on the device:");
        output.Line($"  edgeml-agent enroll --hub {hub.Hub.Authority} --token {token} --data /var/lib/edgeml");
    }

    private static async Task ListAsync(CliArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var query = new List<string>();
        foreach (var key in new[] { "group", "status", "model", "tag" })
        {
            if (args.Get(key) is { } v) query.Add($"{key}={Uri.EscapeDataString(v)}");
        }

        args.RejectUnknown(0);
        var devices = (await hub.GetAsync("/api/devices" + (query.Count > 0 ? "?" + string.Join('&', query) : "")).ConfigureAwait(false)).AsArray();
        if (output.Json(devices)) return;
        var now = DateTimeOffset.UtcNow;
        var rows = devices.Select(d => new[]
        {
            S(d, "id"), S(d, "group") ?? "-", S(d, "presence"), Ago(d?["lastSeen"], now), S(d, "model") is { } m ? $"{m}@{S(d, "modelVersion")}" : "-",
            d!["latencyP99Ms"] is { } p99 ? $"{N(p99):0.00} ms" : "-", S(d, "drift") ?? "-", d!["records"]!.GetValue<long>().ToString(CultureInfo.InvariantCulture), S(d, "enrollment"),
        }).ToList();
        output.Table(["DEVICE", "GROUP", "PRESENCE", "LAST SEEN", "MODEL", "P99", "DRIFT", "RECORDS", "ENROLLMENT"], rows);
        output.Line($"{devices.Count} device(s); {devices.Count(d => S(d, "presence") == "online")} online");
    }

    private static async Task ShowAsync(CliArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var id = One(args, "devices show ID");
        args.RejectUnknown(1);
        var d = await hub.GetAsync($"/api/devices/{Uri.EscapeDataString(id)}").ConfigureAwait(false);
        if (output.Json(d)) return;
        var now = DateTimeOffset.UtcNow;
        var tags = d["tags"]?.AsObject().Select(kv => $"{kv.Key}={kv.Value}") ?? [];
        output.Pairs([
            ("device", S(d, "id")), ("group", S(d, "group") ?? "-"), ("tags", string.Join(", ", tags) is { Length: > 0 } t ? t : "-"),
            ("enrollment", S(d, "enrollment") + (S(d, "enrolledAt") is { } at ? $" (since {at})" : "") + (S(d, "revokedAt") is { } r ? $" (revoked {r})" : "")),
            ("presence", $"{S(d, "presence")} (last seen {Ago(d["lastSeen"], now)}, boot {S(d, "boot") ?? "-"})"),
            ("records", d["records"]!.GetValue<long>().ToString(CultureInfo.InvariantCulture)),
            ("model", S(d, "model") is { } m ? $"{m} {S(d, "modelVersion")}" : "-"),
            ("drift", S(d, "drift") is { } drift ? $"{drift} (last hour; `edgeml drift show --device {S(d, "id")}`)" : "-"),
        ]);
        if (d["health"] is not JsonObject h) return;
        output.Line($"health (reported {Ago(d["healthAt"], now)}):");
        var lines = new List<(string, string?)>();
        if (h["model"] is JsonObject hm)
        {
            lines.Add(("  inference", $"{N(hm["inferencesPerSecond"]):0.0}/s, p50 {N(hm["latencyP50Ms"]):0.000} ms, p99 {N(hm["latencyP99Ms"]):0.000} ms, {hm["predictions"]} predictions, {hm["windowsDropped"]} windows dropped, {hm["provider"]}"));
        }

        if (h["system"] is JsonObject sys)
        {
            lines.Add(("  system", $"cpu {N(sys["cpuPercent"]):0}%, memory {N(sys["memoryUsedPercent"]):0}% used (agent rss {N(sys["processRssMb"]):0.0} MB), "
                                   + $"disk free {N(sys["diskFreeMb"]):0} MB, temperature {(sys["temperatureC"] is { } tc ? $"{N(tc):0.0} °C" : "n/a")}, load {N(sys["load1"]):0.00}"));
        }

        if (h["uptimeSeconds"] is { } up) lines.Add(("  uptime", TimeSpan.FromSeconds(Math.Round(N(up))).ToString()));
        foreach (var s in h["sensors"]?.AsArray() ?? [])
        {
            lines.Add(($"  sensor {S(s, "name")}", $"{S(s, "state")}, {s!["samples"]} samples, {s["errors"]} errors" + (S(s, "lastError") is { } le ? $" (last: {le})" : "")));
        }

        if (h["outbox"] is JsonObject ob)
        {
            lines.Add(("  outbox", $"waiting {Counts(ob["depth"])}; dropped {Counts(ob["dropped"])}; {N(ob["bytes"]) / 1024:0} of {N(ob["maxBytes"]) / 1024:0} KiB"));
        }

        output.Pairs(lines);
    }

    private static async Task RevokeAsync(CliArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var id = One(args, "devices revoke ID");
        args.RejectUnknown(1);
        var d = await hub.PostAsync($"/api/devices/{Uri.EscapeDataString(id)}/revoke", new JsonObject()).ConfigureAwait(false);
        if (output.Json(d)) return;
        output.Line($"device '{id}' revoked: its credentials no longer work and its connection was closed");
    }

    private static async Task CreateTokenAsync(CliArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var body = new JsonObject { ["role"] = args.Get("role") ?? "viewer", ["name"] = args.Get("name") ?? "" };
        if (args.Get("expires") is { } expires)
        {
            if (!double.TryParse(expires, NumberStyles.Float, CultureInfo.InvariantCulture, out var hours) || hours <= 0)
            {
                throw new UsageException($"--expires '{expires}' is not a positive number of hours");
            }

            body["expiresHours"] = hours;
        }

        args.RejectUnknown(0);
        var t = await hub.PostAsync("/api/tokens", body).ConfigureAwait(false);
        if (output.Json(t)) return;
        output.Line($"{S(t, "role")} token{(S(t, "name") is { Length: > 0 } n ? $" '{n}'" : "")} (shown once; the hub keeps only its hash):");
        output.Line($"  {S(t, "token")}");
    }

    private static async Task ListTokensAsync(CliArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        args.RejectUnknown(0);
        var tokens = (await hub.GetAsync("/api/tokens").ConfigureAwait(false)).AsArray();
        if (output.Json(tokens)) return;
        output.Table(["NAME", "ROLE", "CREATED", "EXPIRES", "STATE"], tokens.Select(t => new[]
        {
            S(t, "name") is { Length: > 0 } n ? n : "-", S(t, "role"), S(t, "created"), S(t, "expires") ?? "never", S(t, "state"),
        }).ToList());
    }

    private static async Task RevokeTokenAsync(CliArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var name = args.Positional.Count == 1 ? args.Positional[0] : throw new UsageException("usage: edgeml tokens revoke NAME");
        args.RejectUnknown(1);
        var r = await hub.PostAsync($"/api/tokens/{Uri.EscapeDataString(name)}/revoke", new JsonObject()).ConfigureAwait(false);
        if (output.Json(r)) return;
        output.Line($"revoked {S(r, "revoked")} token(s) called '{name}': they stop working now");
    }

    private static async Task DriftAsync(CliArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var query = new List<string> { $"since={Uri.EscapeDataString(args.Get("since") ?? "24h")}" };
        if (args.Get("device") is { } device) query.Add($"device={Uri.EscapeDataString(device)}");
        if (args.Get("group") is { } group) query.Add($"group={Uri.EscapeDataString(group)}");
        args.RejectUnknown(0);
        var v = await hub.GetAsync("/api/drift?" + string.Join('&', query)).ConfigureAwait(false);
        if (output.Json(v)) return;
        static string When(JsonNode? t) => t is JsonValue jv && jv.TryGetValue<DateTimeOffset>(out var at) ? at.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) : "-";
        output.Line($"drift of {S(v, "scope")}: {S(v, "status")} — {S(v, "model")}@{S(v, "version")}, {v["windows"]} windows from {v["devices"]} device(s), {When(v["from"])} … {When(v["to"])}");
        string Test(JsonNode? f, string name, string format) =>
            f?["tests"]?.AsArray().FirstOrDefault(t => S(t, "test") == name) is { } t ? N(t["statistic"]).ToString(format, CultureInfo.InvariantCulture) + (t["over"]!.GetValue<bool>() ? "*" : "") : "-";
        foreach (var (title, key) in new[] { ("input", "features"), ("output (information)", "outputs") })
        {
            var rows = (v[key]?.AsArray() ?? []).Select(f => new[]
            {
                S(f, "feature"), S(f, "status"), Test(f, "psi", "0.000"), Test(f, "ks", "0.000"),
                f?["tests"]?.AsArray().FirstOrDefault(t => S(t, "test") == "ks")?["pValue"] is { } p ? N(p).ToString("0.####", CultureInfo.InvariantCulture) : "-",
                Test(f, "wasserstein_normed", "0.000"), Test(f, "jensen_shannon", "0.000"), S(f, "trend"),
                $"{N(f!["mean"]):0.###} ± {N(f["sd"]):0.###} (baseline {N(f["baselineMean"]):0.###} ± {N(f["baselineSd"]):0.###})",
            }).ToList();
            if (rows.Count == 0) continue;
            output.Line("");
            output.Table([title.ToUpperInvariant(), "STATUS", "PSI", "KS", "KS P", "WASSERSTEIN", "JS", "TREND", "MEAN ± SD"], rows);
        }

        output.Line("");
        output.Line("* over its threshold (the model's, or PSI 0.1 moderate / 0.25 major, Wasserstein and JS 0.1, KS p below 0.05 / features).");
        output.Line("A feature drifts when KS and chi-square are significant and PSI or Wasserstein is over; the status comes from the inputs");
        output.Line("(outputs vary from machine to machine with the model's confidence: shown for information).");
    }

    private static string One(CliArgs args, string what) =>
        args.Positional.Count >= 1 ? args.Positional[0] : throw new UsageException($"{what}: which device?");

    private static string? S(JsonNode? node, string key) => node?[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : node?[key]?.ToJsonString();

    private static double N(JsonNode? node) => node is JsonValue v && v.TryGetValue<double>(out var d) ? d : double.NaN;

    private static string Counts(JsonNode? node) =>
        node is JsonObject o && o.Count > 0 ? string.Join(", ", o.Select(kv => $"{kv.Key} {kv.Value}")) : "none";

    private static string Ago(JsonNode? at, DateTimeOffset now)
    {
        if (at is not JsonValue v || !v.TryGetValue<DateTimeOffset>(out var t)) return "never";
        var d = now - t;
        return d.TotalSeconds < 1 ? "now" : d.TotalMinutes < 1 ? $"{d.TotalSeconds:0}s ago" : d.TotalHours < 1 ? $"{d.TotalMinutes:0}m ago"
            : d.TotalDays < 1 ? $"{d.TotalHours:0}h ago" : $"{d.TotalDays:0}d ago";
    }
}

/// <summary>People get aligned tables; scripts (<c>--json</c>) get the hub's JSON unchanged.</summary>
public sealed class Output(TextWriter writer, bool json)
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public bool Json(JsonNode node)
    {
        if (!json) return false;
        writer.WriteLine(node.ToJsonString(Indented));
        return true;
    }

    public void Line(string text) => writer.WriteLine(text);

    public void Table(string[] header, IReadOnlyList<string?[]> rows)
    {
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => (r[i] ?? "-").Length))).ToArray();
        writer.WriteLine(string.Join("  ", header.Select((h, i) => h.PadRight(widths[i]))).TrimEnd());
        foreach (var r in rows) writer.WriteLine(string.Join("  ", r.Select((c, i) => (c ?? "-").PadRight(widths[i]))).TrimEnd());
    }

    public void Pairs(IReadOnlyList<(string Key, string? Value)> pairs)
    {
        var width = pairs.Count == 0 ? 0 : pairs.Max(p => p.Key.Length);
        foreach (var (k, v) in pairs) writer.WriteLine($"{(k + ":").PadRight(width + 1)} {v ?? "-"}");
    }
}
