using System.CommandLine;
using System.Globalization;
using EdgeMl.CommandLine;
using EdgeMl.ModelTools;
using EdgeMl.Protocol.Packages;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EdgeMl.Cli;

/// <summary>
/// <c>edgeml</c>: the operator's tool, on System.CommandLine (generated help for every command, <c>--version</c>,
/// <c>edgeml completion bash</c>). Errors are one line on stderr: exit 1 (refused or failed), 2 (usage).
/// </summary>
public static class EdgeMlCli
{
    /// <summary>Runs <c>edgeml ARGS</c>; returns the exit code (<see cref="CliApp"/>).</summary>
    public static Task<int> MainAsync(string[] argv, TextWriter stdout, TextWriter stderr, CancellationToken ct = default) =>
        CliApp.RunAsync(BuildRoot(stdout, stderr), argv, stdout, stderr, IsUserError, ct: ct);

    /// <summary>What the user or the environment caused (printed as is, exit 1).</summary>
    public static bool IsUserError(Exception e) =>
        e is HubException or IOException or UnauthorizedAccessException or InvalidDataException or ModelToolException or ModelPackageException or System.Text.Json.JsonException
            or FormatException or System.Security.Cryptography.CryptographicException;

    /// <summary>The whole command tree (also what docs/cli.md is generated from).</summary>
    public static RootCommand BuildRoot(TextWriter stdout, TextWriter stderr)
    {
        var hub = CliOptions.HubUrl("--hub", "The hub's API: HOST[:PORT] (port 8080) or http(s)://HOST[:PORT]; else EDGEML_HUB, the saved login, http://127.0.0.1:8080");
        hub.Recursive = true;
        var token = CliOptions.Text("--token", "API token; else EDGEML_TOKEN or the saved login", "TOKEN");
        token.Recursive = true;
        var json = CliOptions.Flag("--json", "Print the hub's JSON unchanged (for scripts)");
        json.Recursive = true;
        var root = new RootCommand("edgeml — the operator's tool for an EdgeMl fleet hub") { hub, token, json };
        root.HelpName = "edgeml";

        Command Leaf(string name, string description, Func<ParsedArgs, Output, Task> run, params Symbol[] symbols)
        {
            var c = new Command(name, description);
            foreach (var s in symbols)
            {
                switch (s)
                {
                    case Option o: c.Options.Add(o); break;
                    case Argument a: c.Arguments.Add(a); break;
                    case Command sub: c.Subcommands.Add(sub); break;
                }
            }

            c.SetAction(async (parse, _) =>
            {
                var args = new ParsedArgs(parse);
                try
                {
                    await run(args, new Output(stdout, args.Has("json"))).ConfigureAwait(false);
                }
                catch (InvalidOperationException e) when (e.Source == "System.Text.Json")
                {
                    // A JSON answer of another shape (JsonNode casts): a server that is not this hub, or another version.
                    throw new HubException($"the hub's answer is not what this edgeml expects (is --hub an EdgeMl hub of the same version?): {e.Message}");
                }

                return CliApp.Ok;
            });
            return c;
        }

        static Task Sync(Action a)
        {
            a();
            return Task.CompletedTask;
        }

        static Argument<string> Arg(string name, string description) => new(name) { Description = description };

        // A time: ISO 8601 (UTC without an offset) or a duration back from now; checked here, sent to the hub as ISO 8601.
        static Option<string> Time(string name, string description) => CliOptions.Parsed<string>(name, description, "DURATION|TIME", false,
            t => DateTimeOffset.TryParse(t, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out _) || EdgeMl.Protocol.Text.Durations.TryParse(t, out _, out _)
                ? (true, t, "") : (false, "", EdgeMl.Protocol.Text.Durations.TryParse(t, out _, out var why) ? "" : $"{why}, or a time (ISO 8601)"));
        var expires = CliOptions.Duration("--expires", "How long the enrollment token stays valid, 1m to 365d (default: the hub's --EnrollTokenHours)", min: TimeSpan.FromMinutes(1), max: TimeSpan.FromDays(365));

        root.Subcommands.Add(Leaf("login", "Remember the hub and API token (~/.config/edgeml/login.json); checked against the hub first", LoginAsync));
        root.Subcommands.Add(new Command("devices", "Register, list, show and revoke devices")
        {
            Leaf("enroll", "Register a device; prints its one-time enrollment token and the command to run on it", EnrollAsync,
                Arg("ID", "The device's id (letters, digits, - _ .)"), CliOptions.Text("--group", "The device's group (rollouts target groups)", "GROUP"),
                CliOptions.Many("--tag", "A tag, repeatable", "KEY=VALUE"), expires),
            Leaf("list", "Devices with presence, model, p99 latency, drift; filtered", ListAsync,
                CliOptions.Text("--group", "Only this group", "GROUP"), CliOptions.Choice("--status", "Only devices with this presence or enrollment state", "online", "offline", "neverSeen", "pending", "enrolled", "revoked", "unregistered"),
                CliOptions.Parsed<string>("--model", "Only devices running this model", "NAME[@VERSION]", false,
                    t => (EdgeMl.Protocol.Text.ModelRefs.TryParse(t, out _, out var e, versionOptional: true), t, e)), CliOptions.Text("--tag", "Only devices with this tag", "KEY[=VALUE]")),
            Leaf("show", "One device: registry, presence, latest health", ShowAsync, Arg("ID", "The device's id")),
            Leaf("records", "A device's records, newest first (times in UTC): every class or one, between two times", RecordsAsync, Arg("ID", "The device's id"),
                CliOptions.Choice("--class", "Only this class", "telemetry", "health", "drift", "alert"),
                Time("--since", "Only those the device produced at or after this time (ISO 8601, UTC without an offset; 06:00 is today's) or this long ago (2h)"),
                Time("--until", "Only those it produced before this time (the same forms)"), CliOptions.Integer("--limit", "At most N, the newest (default 100)", 1, 10_000)),
            Leaf("revoke", "The device's credentials stop working; it is disconnected now", RevokeAsync, Arg("ID", "The device's id")),
        });
        root.Subcommands.Add(new Command("tokens", "API tokens for operators and viewers")
        {
            Leaf("create", "An API token (shown once; the hub keeps only its hash)", CreateTokenAsync,
                CliOptions.Choice("--role", "What it may do (default viewer)", "viewer", "operator"), CliOptions.Text("--name", "Its name (in the audit trail)", "NAME"),
                CliOptions.Duration("--expires", "How long it stays valid, 1m to 3650d (default: until revoked)", min: TimeSpan.FromMinutes(1), max: TimeSpan.FromDays(3650))),
            Leaf("list", "Name, role, created, expiry, state (active, expired, revoked)", ListTokensAsync),
            Leaf("revoke", "The tokens called NAME stop working at once", RevokeTokenAsync, Arg("NAME", "The tokens' name")),
        });
        root.Subcommands.Add(new Command("keys", "Signing keys for model packages")
        {
            Leaf("create", "An ECDSA P-256 signing key: NAME.key (private) and NAME.pub", (a, o) => Sync(() => ModelCommands.CreateKey(a, o)),
                Arg("NAME", "The key's name (file names and key id)"), CliOptions.Text("--dir", "Where to write them (default: here)", "DIR")),
        });
        var model = new Command("model", "Sign, verify, push, list, inspect, quantize, evaluate and package models")
        {
            Leaf("sign", "Sign a package with a private key", (a, o) => Sync(() => ModelCommands.Sign(a, o)),
                Arg("PKG", "The .edgepkg"), CliOptions.Text("--key", "The private key (from edgeml keys create)", "FILE.key", required: true), CliOptions.Text("--out", "Where to write the signed package (default: in place)", "FILE")),
            Leaf("verify", "Exit 0 when the package is signed by a trusted key", (a, o) => Sync(() => ModelCommands.Verify(a, o)),
                Arg("PKG", "The .edgepkg"), CliOptions.Many("--trust", "A trusted public key, or a folder of them; repeatable", "FILE.pub|DIR", required: true)),
            Leaf("push", "Upload to the hub's registry (checked there: SHA-256, signature, size limit)", (a, o) => ModelCommands.PushAsync(a, o, stderr), Arg("PKG", "The .edgepkg")),
            Leaf("list", "The registry: versions, hashes, keys, who pushed", ModelCommands.ListAsync),
            Leaf("inspect", "An .onnx or .edgepkg: inputs/outputs, opset, operators, parameters, quantization, external data", (a, o) => Sync(() => ToolchainCommands.Inspect(a, o)),
                Arg("FILE", "The .onnx or .edgepkg")),
            Leaf("quantize", "int8 QDQ (static) or dynamic quantization, checked against the fp32 model before it is written", (a, o) => Sync(() => ToolchainCommands.Quantize(a, o, stderr)),
                Arg("IN", "The fp32 .onnx (or .edgepkg)"), CliOptions.Text("--calibration", "Calibration data: .npy, .npz (by input name), or CSV with --manifest", "DATA"),
                CliOptions.Text("--out", "The quantized .onnx", "OUT.onnx", required: true), CliOptions.Choice("--mode", "static (default) or dynamic", "static", "dynamic"),
                CliOptions.Choice("--method", "Calibration method (default minmax)", "minmax", "percentile", "entropy"),
                CliOptions.Choice("--activation-type", "Activation type (default uint8)", "uint8", "int8"), CliOptions.Flag("--per-tensor", "One scale per weight tensor (default: per channel)"),
                CliOptions.Many("--exclude", "A node to keep in float; repeatable, or comma-separated", "NODE"),
                CliOptions.Number("--percentile", "The percentile of --method percentile", 50, 100), CliOptions.Integer("--limit", "At most N calibration samples", 1),
                CliOptions.Number("--min-cosine", "Refuse a result whose cosine to fp32 is below this (default 0.99)", -1, 1),
                CliOptions.Number("--max-accuracy-drop", "Keep layers in float until top-1 accuracy drops at most this many points (needs --labels)", 0, 100, "POINTS"),
                CliOptions.Text("--labels", "Labels of the calibration samples (.npy)", "L.npy"), CliOptions.Integer("--max-float-layers", "At most N layers kept in float by the search", 0),
                CliOptions.Integer("--threads", "Threads for the latency check (the target's count)", 1, 1024), CliOptions.Flag("--allow-slower", "Write a result even when it is slower than fp32"),
                CliOptions.Text("--manifest", "A manifest (or .edgepkg) that says how CSV data maps to inputs", "FILE")),
            Leaf("evaluate", "Size and latency ratio, top-1 agreement, errors, cosine, accuracy drop", (a, o) => Sync(() => ToolchainCommands.Evaluate(a, o, stderr)),
                CliOptions.Text("--reference", "The fp32 model", "FP32.onnx", required: true), CliOptions.Text("--candidate", "The quantized model", "INT8.onnx", required: true),
                CliOptions.Text("--data", "Evaluation data: .npy, .npz, .csv or a folder of .csv", "DATA", required: true), CliOptions.Text("--labels", "Labels (.npy) for the accuracy drop", "L.npy"),
                CliOptions.Text("--manifest", "A manifest for CSV data", "FILE"), CliOptions.Integer("--limit", "At most N samples", 1),
                CliOptions.Integer("--threads", "Threads", 1, 1024), CliOptions.Integer("--repeats", "Latency repeats", 1, 100_000)),
            Leaf("package", "Manifest checked against the model, SHA-256 filled in, drift baseline from reference data", (a, o) => Sync(() => ToolchainCommands.Package(a, o, stderr)),
                CliOptions.Text("--model", "The .onnx", "M.onnx", required: true), CliOptions.Text("--manifest", "A manifest template (or a .edgepkg to start from)", "TEMPLATE.json", required: true),
                CliOptions.Text("--out", "The package to write", "X.edgepkg", required: true), CliOptions.Text("--reference", "Reference data for the drift baseline", "DATA"),
                CliOptions.Text("--name", "The model's name (default: the manifest's)", "NAME"), CliOptions.Text("--version", "The version (default: the manifest's)", "VERSION")),
        };
        root.Subcommands.Add(model);
        var rollout = new Command("rollout", "Staged rollouts: start, status, pause, resume, abort")
        {
            Leaf("start", "Each wave shadows the model, gates decide, then it is activated", RolloutCommands.StartAsync,
                CliOptions.ModelArgument("MODEL", "NAME@VERSION from the registry"), CliOptions.Text("--to", "The group to roll out to", "GROUP"),
                CliOptions.Text("--devices", "Or these devices", "ID,…"), CliOptions.Text("--waves", "Wave sizes (default 5%,25%,100%)", "5%,25%,100%"),
                CliOptions.Many("--gate", "A gate each wave must pass, repeatable (agreement>=0.95, latency_ratio<=1.2 …)", "GATE"),
                CliOptions.Duration("--soak", "How long each wave shadows before its gates are judged"), CliOptions.Duration("--watch", "How long an activated device is watched before it counts"),
                CliOptions.Duration("--offline-timeout", "A device offline this long fails its wave")),
            Leaf("status", "All rollouts, or one: waves, gate figures, each device's phase", RolloutCommands.StatusAsync, new Argument<string>("ID") { Description = "The rollout", Arity = ArgumentArity.ZeroOrOne }),
            Leaf("pause", "Stop before the next wave", (a, o) => RolloutCommands.ControlAsync(a, o, "pause"), Arg("ID", "The rollout")),
            Leaf("resume", "Go on with the next wave", (a, o) => RolloutCommands.ControlAsync(a, o, "resume"), Arg("ID", "The rollout")),
            Leaf("abort", "Every device it reached goes back to the model it had", (a, o) => RolloutCommands.ControlAsync(a, o, "abort"), Arg("ID", "The rollout")),
        };
        rollout.Subcommands.Add(Leaf("list", "The same as rollout status without an ID", RolloutCommands.StatusAsync));
        root.Subcommands.Add(rollout);
        root.Subcommands.Add(Leaf("rollback", "Every device of the group back to its previous model", RolloutCommands.RollbackAsync, Arg("GROUP", "The group")));
        var since = Time("--since", "From this long ago (24h, 7d) or this time (ISO 8601)");
        root.Subcommands.Add(Leaf("audit", "Who pushed, signed, started, paused, aborted, rolled back what; which device ran what", (a, o) => RolloutCommands.AuditAsync(a, o, stdout),
            since, CliOptions.Text("--action", "Only this action (model.push, rollout.start …)", "ACTION"), CliOptions.Text("--device", "Only this device", "ID"),
            CliOptions.Text("--rollout", "Only this rollout", "ID"), CliOptions.Flag("--csv", "CSV instead of a table"), CliOptions.Text("--out", "Write to a file", "FILE")));
        root.Subcommands.Add(new Command("drift", "Data drift against the model's baseline")
        {
            Leaf("show", "Per feature: status, PSI, KS, Wasserstein, trend (no --device or --group: the fleet)", DriftAsync,
                CliOptions.Text("--device", "One device", "ID"), CliOptions.Text("--group", "One group", "GROUP"), CliOptions.Duration("--since", "Over this long (default 24h)")),
        });
        root.Subcommands.Add(CliApp.CompletionCommand("edgeml"));
        return root;
    }

    private static async Task LoginAsync(ParsedArgs args, Output output)
    {
        var hub = HubClient.ParseHub(args.Get("hub") ?? throw new UsageException("login needs --hub URL"));
        var token = args.Get("token") ?? throw new UsageException("login needs --token TOKEN (an operator's first token is in the hub's DATA/operator.token)");
        using (var client = new HubClient(hub, token))
        {
            // Proves the token, and that this is an EdgeMl hub, before anything is saved.
            if (await client.GetAsync("/api/devices").ConfigureAwait(false) is not JsonArray devices || devices.Any(d => d is not JsonObject))
            {
                throw new HubException($"{hub} did not answer like an EdgeMl hub (GET /api/devices is not a list of devices); nothing saved");
            }
        }

        LoginFile.Write(new LoginFile.Login(hub.ToString(), token));
        output.Line($"logged in to {hub}; saved in {LoginFile.PathName}");
    }

    private static async Task EnrollAsync(ParsedArgs args, Output output)
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
        if (args.Get("expires") is not null) body["expiresHours"] = args.Value<TimeSpan>("expires").TotalHours;
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

    private static async Task ListAsync(ParsedArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var query = new List<string>();
        foreach (var key in new[] { "group", "status", "model", "tag" })
        {
            if (args.Get(key) is { } v) query.Add($"{key}={Uri.EscapeDataString(v)}");
        }

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

    /// <summary>
    /// <c>edgeml devices records ID [--class C] [--since T] [--until T] [--limit N]</c>: <c>GET /api/devices/ID/records</c>
    /// with the times as ISO 8601; a table of time (UTC, ms), class, boot, seq and the data (cut at 100 characters).
    /// </summary>
    private static async Task RecordsAsync(ParsedArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var id = One(args, "devices records ID");
        var limit = args.GetLong("limit") ?? 100;
        var query = new List<string> { $"limit={limit.ToString(CultureInfo.InvariantCulture)}" };
        if (args.Get("class") is { } recordClass) query.Add($"class={Uri.EscapeDataString(recordClass)}");
        foreach (var key in new[] { "since", "until" })
        {
            if (args.Get(key) is { } t) query.Add($"{key}={Uri.EscapeDataString(RolloutCommands.Time(t, "--" + key).ToString("O", CultureInfo.InvariantCulture))}");
        }

        var records = (await hub.GetAsync($"/api/devices/{Uri.EscapeDataString(id)}/records?{string.Join('&', query)}").ConfigureAwait(false)).AsArray();
        if (output.Json(records)) return;
        output.Table(["AT (UTC)", "CLASS", "BOOT", "SEQ", "DATA"], records.Select(r => new[]
        {
            DateTimeOffset.FromUnixTimeMilliseconds(r!["at"]!.GetValue<long>()).ToString("yyyy-MM-dd HH:mm:ss.fff", CultureInfo.InvariantCulture), S(r, "class"), S(r, "boot"),
            r["seq"]!.GetValue<long>().ToString(CultureInfo.InvariantCulture), r["data"]?.ToJsonString() is { } data && data.Length > 100 ? data[..99] + "…" : r["data"]?.ToJsonString() ?? "",
        }).ToList());
        output.Line(records.Count == limit ? $"the newest {records.Count} record(s) of {id} (--limit N for more, at most 10000)" : $"{records.Count} record(s) of {id}");
    }

    private static async Task ShowAsync(ParsedArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var id = One(args, "devices show ID");
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

    private static async Task RevokeAsync(ParsedArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var id = One(args, "devices revoke ID");
        var d = await hub.PostAsync($"/api/devices/{Uri.EscapeDataString(id)}/revoke", new JsonObject()).ConfigureAwait(false);
        if (output.Json(d)) return;
        output.Line($"device '{id}' revoked: its credentials no longer work and its connection was closed");
    }

    private static async Task CreateTokenAsync(ParsedArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var body = new JsonObject { ["role"] = args.Get("role") ?? "viewer", ["name"] = args.Get("name") ?? "" };
        if (args.Get("expires") is not null) body["expiresHours"] = args.Value<TimeSpan>("expires").TotalHours;

        var t = await hub.PostAsync("/api/tokens", body).ConfigureAwait(false);
        if (output.Json(t)) return;
        output.Line($"{S(t, "role")} token{(S(t, "name") is { Length: > 0 } n ? $" '{n}'" : "")} (shown once; the hub keeps only its hash):");
        output.Line($"  {S(t, "token")}");
    }

    private static async Task ListTokensAsync(ParsedArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var tokens = (await hub.GetAsync("/api/tokens").ConfigureAwait(false)).AsArray();
        if (output.Json(tokens)) return;
        output.Table(["NAME", "ROLE", "CREATED", "EXPIRES", "STATE"], tokens.Select(t => new[]
        {
            S(t, "name") is { Length: > 0 } n ? n : "-", S(t, "role"), S(t, "created"), S(t, "expires") ?? "never", S(t, "state"),
        }).ToList());
    }

    private static async Task RevokeTokenAsync(ParsedArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var name = args.Positional.Count == 1 ? args.Positional[0] : throw new UsageException("usage: edgeml tokens revoke NAME");
        var r = await hub.PostAsync($"/api/tokens/{Uri.EscapeDataString(name)}/revoke", new JsonObject()).ConfigureAwait(false);
        if (output.Json(r)) return;
        output.Line($"revoked {S(r, "revoked")} token(s) called '{name}': they stop working now");
    }

    private static async Task DriftAsync(ParsedArgs args, Output output)
    {
        using var hub = HubClient.From(args);
        var query = new List<string> { $"since={Uri.EscapeDataString(args.Get("since") ?? "24h")}" };
        if (args.Get("device") is { } device) query.Add($"device={Uri.EscapeDataString(device)}");
        if (args.Get("group") is { } group) query.Add($"group={Uri.EscapeDataString(group)}");
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

    private static string One(ParsedArgs args, string what) =>
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
