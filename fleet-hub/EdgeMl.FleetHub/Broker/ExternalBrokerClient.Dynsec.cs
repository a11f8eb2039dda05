using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using EdgeMl.Protocol.Wire;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeMl.FleetHub.Broker;

/// <summary>
/// <c>--BrokerDynsec true</c>: devices' identities at an external Mosquitto follow the hub, through Mosquitto's
/// dynamic-security plugin (commands on <c>$CONTROL/dynamic-security/v1</c>, answers on <c>…/v1/response</c>, with
/// the hub's <c>--BrokerUser</c> as the plugin's admin). A device that claims its enrollment gets a client (user
/// name and MQTT client id = device id, the password it was given) with its own role <c>edgeml-device-{id}</c>:
/// publish only on the topics a device publishes under <c>edgeml/{id}/</c> (status, tele, health, drift,
/// state/reported, cmd/+/res), subscribe only under <c>edgeml/{id}/#</c>. Revocation deletes the client and its role,
/// which makes Mosquitto end its open connection (its Last Will is not delivered then: the hub marks it offline) and
/// refuse its password from then on. On every connect the hub
/// gives itself a role <c>edgeml-hub</c> (publish on <c>edgeml/#</c>: desired states, commands), which doubles as the
/// check that the plugin is there and accepts the hub: when it is not, the hub says so in one error line.
/// </summary>
public sealed partial class ExternalBrokerClient : IDeviceConnections
{
    private const string ControlTopic = "$CONTROL/dynamic-security/v1";
    private const string ResponseTopic = ControlTopic + "/response";
    private static readonly TimeSpan ControlTimeout = TimeSpan.FromSeconds(10);
    private const string HubRole = "edgeml-hub";
    private readonly ConcurrentDictionary<string, TaskCompletionSource<JsonArray>> _pending = new();
    private bool _hubRoleGiven;
    /// <summary>Logins created while the broker was away (device id → password), created at the next connect; this replica's memory only.</summary>
    private readonly ConcurrentDictionary<string, string> _pendingGrants = new(StringComparer.Ordinal);
    /// <summary>Devices with a login the hub owns at the broker (as last listed, and changed since); guarded by itself.</summary>
    private readonly HashSet<string> _logins = new(StringComparer.Ordinal);
    /// <summary>Enrolled devices the broker had no login for at the last listing.</summary>
    private readonly HashSet<string> _missing = new(StringComparer.Ordinal);
    private bool _reconciled;
    /// <summary>The plugin answered and the hub has its role on this connection.</summary>
    private bool _dynsecReady;

    /// <summary>Role name of one device at the broker.</summary>
    public static string DeviceRole(string deviceId) => $"edgeml-device-{deviceId}";

    /// <inheritdoc/>
    /// <remarks>
    /// While the broker is away (this replica is not connected, or the connection broke during the call) the login is
    /// kept in this replica's memory and created at its next connect (<see cref="ReconcileAsync"/>): the device's
    /// enrollment goes through. The plugin only takes plaintext passwords and the store keeps only hashes, so a
    /// replica that stops before the broker comes back loses it: the device is then reported without a login
    /// (<see cref="LoginState"/>, a warning at every connect) and must be enrolled again.
    /// </remarks>
    public async Task GrantAsync(string deviceId, string password)
    {
        if (!settings.BrokerDynsec) return;
        if (_client is not { IsConnected: true })
        {
            KeepForLater(deviceId, password);
            return;
        }

        try
        {
            await CreateLoginAsync(deviceId, password).ConfigureAwait(false);
        }
        catch (BrokerIdentityException) when (_client is not { IsConnected: true })
        {
            KeepForLater(deviceId, password); // the broker went away during the call
        }
    }

    private void KeepForLater(string deviceId, string password)
    {
        _pendingGrants[deviceId] = password;
        LogGrantLater(logger, deviceId, settings.Broker);
    }

    /// <summary>The device's client and role at the broker, replacing whatever was there.</summary>
    private async Task CreateLoginAsync(string deviceId, string password)
    {
        var role = DeviceRole(deviceId);
        var acls = new JsonArray(
            Acl("subscribePattern", $"{Topics.Root}/{deviceId}/#"),
            Acl("unsubscribePattern", $"{Topics.Root}/{deviceId}/#"),
            Acl("publishClientSend", Topics.Status(deviceId)),
            Acl("publishClientSend", Topics.Telemetry(deviceId)),
            Acl("publishClientSend", Topics.Health(deviceId)),
            Acl("publishClientSend", Topics.Drift(deviceId)),
            Acl("publishClientSend", Topics.StateReported(deviceId)),
            Acl("publishClientSend", $"{Topics.Root}/{deviceId}/cmd/+/res"));
        // A client of that name that the hub did not create (an account an administrator made by hand, without the
        // device's role) is never replaced: the enrollment is refused, naming it.
        var existing = await ControlAsync([new JsonObject { ["command"] = "getClient", ["username"] = deviceId }]).ConfigureAwait(false);
        if (existing.Count > 0 && existing[0]?["data"]?["client"] is JsonObject found
            && !(found["roles"] as JsonArray ?? []).Any(r => r?["rolename"]?.GetValue<string>() == role))
        {
            throw new BrokerIdentityException(
                $"the broker already has a client '{deviceId}' that the hub did not create (it lacks the role {role}): it is left as it is; remove it at the broker or enroll the device under another id");
        }

        // Again after a revocation or a lost answer: whatever the hub made is replaced. "not found" / "already exists" on
        // the first two are expected; the role is written fresh so that its ACLs are this version's.
        var answers = await ControlAsync(
        [
            new JsonObject { ["command"] = "deleteClient", ["username"] = deviceId },
            new JsonObject { ["command"] = "deleteRole", ["rolename"] = role },
            new JsonObject { ["command"] = "createRole", ["rolename"] = role, ["acls"] = acls },
            new JsonObject
            {
                ["command"] = "createClient", ["username"] = deviceId, ["clientid"] = deviceId, ["password"] = password,
                ["roles"] = new JsonArray(new JsonObject { ["rolename"] = role }),
            },
        ]).ConfigureAwait(false);
        Check(answers, 2, $"creating role {role}");
        Check(answers, 3, $"creating client {deviceId}");
        _pendingGrants.TryRemove(deviceId, out _);
        lock (_logins)
        {
            _logins.Add(deviceId);
            _missing.Remove(deviceId);
        }
    }

    /// <summary>Revocation: deletes the device's client and role at the broker (Mosquitto ends its connection).</summary>
    /// <exception cref="BrokerIdentityException">The plugin did not answer or refused.</exception>
    /// <remarks>
    /// While the broker is away the revocation is in the registry only; every replica deletes the logins of revoked
    /// devices at its next connect (<see cref="ReconcileAsync"/>), before devices can use them again.
    /// </remarks>
    public async Task DisconnectAsync(string deviceId)
    {
        if (!settings.BrokerDynsec) return;
        _pendingGrants.TryRemove(deviceId, out _);
        try
        {
            await DeleteLoginAsync(deviceId).ConfigureAwait(false);
        }
        catch (BrokerIdentityException) when (_client is not { IsConnected: true })
        {
            LogRevokeLater(logger, deviceId, settings.Broker);
            store.SetPresence(deviceId, "offline", null, DateTimeOffset.UtcNow); // its connection went with the broker
        }
    }

    private async Task DeleteLoginAsync(string deviceId)
    {
        // Only a client the hub made (with the device's role): one an administrator made by hand under that name stays.
        var existing = await ControlAsync([new JsonObject { ["command"] = "getClient", ["username"] = deviceId }]).ConfigureAwait(false);
        if (existing.Count > 0 && existing[0]?["data"]?["client"] is JsonObject found
            && !(found["roles"] as JsonArray ?? []).Any(r => r?["rolename"]?.GetValue<string>() == DeviceRole(deviceId)))
        {
            lock (_logins) _logins.Remove(deviceId);
            return;
        }

        var answers = await ControlAsync(
        [
            new JsonObject { ["command"] = "deleteClient", ["username"] = deviceId },
            new JsonObject { ["command"] = "deleteRole", ["rolename"] = DeviceRole(deviceId) },
        ]).ConfigureAwait(false);
        Check(answers, 0, $"deleting client {deviceId}", notFoundIsFine: true);
        lock (_logins) _logins.Remove(deviceId);
        // Mosquitto ended its connection, but its Last Will is not delivered (the will's publish is checked against the
        // ACLs of a client that no longer exists): the registry marks it offline itself.
        store.SetPresence(deviceId, "offline", null, DateTimeOffset.UtcNow);
    }

    /// <summary>
    /// After every connect (with the plugin set up): the logins this replica kept while the broker was away are created,
    /// the logins of revoked devices are deleted, and enrolled devices without a login are reported (one warning line).
    /// Only clients the hub owns are touched: a client whose user name is a device id and that has the hub's role for
    /// it (<c>edgeml-device-{id}</c>); every other client at the broker is left alone.
    /// </summary>
    private async Task ReconcileAsync()
    {
        try
        {
            foreach (var (id, password) in _pendingGrants.ToArray())
            {
                if (store.FindDevice(id) is { Enrollment: "enrolled" }) await CreateLoginAsync(id, password).ConfigureAwait(false);
                else _pendingGrants.TryRemove(id, out _); // revoked or enrolled again meanwhile
            }

            var answers = await ControlAsync([new JsonObject { ["command"] = "listClients", ["verbose"] = true }]).ConfigureAwait(false);
            Check(answers, 0, "listing the broker's clients");
            var owned = new HashSet<string>(StringComparer.Ordinal);
            foreach (var c in answers[0]?["data"]?["clients"] as JsonArray ?? [])
            {
                if (c?["username"]?.GetValue<string>() is not { } user) continue;
                var roles = c["roles"] as JsonArray ?? [];
                if (roles.Any(r => r?["rolename"]?.GetValue<string>() == DeviceRole(user))) owned.Add(user);
            }

            // Read after the listing: a device enrolled meanwhile shows as enrolled here, and its new login is kept.
            var registry = store.Devices();
            var deleted = 0;
            foreach (var d in registry.Where(d => d.Enrollment is "revoked" or "pending" && owned.Contains(d.Id)))
            {
                // Revoked (or registered again after a revocation, not yet claimed): its old login goes. Asked again just
                // before, so that a login created by an enrollment claimed since the registry was read stays.
                if (store.FindDevice(d.Id)?.Enrollment is not ("revoked" or "pending")) continue;
                await DeleteLoginAsync(d.Id).ConfigureAwait(false);
                owned.Remove(d.Id);
                deleted++;
            }

            var missing = registry.Where(d => d.Enrollment == "enrolled" && !owned.Contains(d.Id) && !_pendingGrants.ContainsKey(d.Id)).Select(d => d.Id).Order(StringComparer.Ordinal).ToList();
            lock (_logins)
            {
                _logins.Clear();
                _logins.UnionWith(owned);
                _missing.Clear();
                _missing.UnionWith(missing);
                _reconciled = true;
            }

            if (missing.Count > 0)
            {
                LogMissingLogins(logger, missing.Count, settings.Broker, string.Join(", ", missing.Take(20)) + (missing.Count > 20 ? ", …" : ""));
            }

            LogReconciled(logger, settings.Broker, owned.Count, deleted, missing.Count);
        }
        catch (BrokerIdentityException e)
        {
            // The connection went away meanwhile, or the plugin refused: the next connect tries again.
            LogDynsecProblem(logger, settings.Broker, $"reconciling devices' logins: {e.Message}");
        }
    }

    /// <summary>
    /// The device's login at the broker as this replica knows it (<c>GET /api/devices/{id}</c>, <c>brokerLogin</c>): null
    /// without <c>--BrokerDynsec</c> or for a device never enrolled; <c>ok</c> (the broker has it); <c>pending</c> (kept
    /// here until the broker is back); <c>missing</c> (enrolled, but the broker has no login for it: enrolled before
    /// <c>--BrokerDynsec</c>, or its login was lost with a replica: enroll it again); <c>revoking</c> (revoked, the broker
    /// still has its login until the next connect); <c>unknown</c> (not listed since this replica started).
    /// </summary>
    public string? LoginState(string deviceId, string enrollment)
    {
        if (!settings.BrokerDynsec || enrollment is not ("enrolled" or "revoked")) return null;
        if (enrollment == "enrolled" && _pendingGrants.ContainsKey(deviceId)) return "pending";
        lock (_logins)
        {
            if (enrollment == "revoked") return _logins.Contains(deviceId) ? "revoking" : null;
            return _logins.Contains(deviceId) ? "ok" : _missing.Contains(deviceId) ? "missing" : _reconciled ? "missing" : "unknown";
        }
    }

    /// <summary>Alert consumers log in at the external broker with its own accounts: nothing to end here.</summary>
    public Task DisconnectConsumersAsync(IReadOnlyCollection<string> tokenHashes) => Task.CompletedTask;

    /// <summary>
    /// After connecting: checks that the plugin answers and that the hub's client has the role <c>edgeml-hub</c>
    /// (publish on edgeml/#); gives it that role when not (Mosquitto then ends the hub's connection once, so that the
    /// new rights apply, and the hub reconnects). Logs one error line when the plugin is missing or refuses.
    /// </summary>
    /// <returns>False when the hub's rights were just changed: the caller connects again before it goes on.</returns>
    private async Task<bool> SetUpDynsecAsync()
    {
        var hub = settings.BrokerUser;
        _dynsecReady = false;
        try
        {
            var answers = await ControlAsync([new JsonObject { ["command"] = "getClient", ["username"] = hub }]).ConfigureAwait(false);
            Check(answers, 0, $"reading client '{hub}'");
            var roles = answers[0]?["data"]?["client"]?["roles"] as JsonArray ?? [];
            if (roles.Any(r => r?["rolename"]?.GetValue<string>() == HubRole))
            {
                LogDynsecReady(logger, settings.Broker);
                _dynsecReady = true;
                return true;
            }

            if (_hubRoleGiven) throw new BrokerIdentityException($"client '{hub}' still lacks the role {HubRole} after it was given");
            _hubRoleGiven = true;
            answers = await ControlAsync(
            [
                new JsonObject
                {
                    ["command"] = "createRole", ["rolename"] = HubRole,
                    ["acls"] = new JsonArray(Acl("publishClientSend", $"{Topics.Root}/#"), Acl("subscribePattern", $"{Topics.Root}/#"), Acl("publishClientReceive", $"{Topics.Root}/#")),
                },
                new JsonObject { ["command"] = "addClientRole", ["username"] = hub, ["rolename"] = HubRole },
            ]).ConfigureAwait(false);
            Check(answers, 0, $"creating role {HubRole}", alreadyIsFine: true);
            Check(answers, 1, $"giving client '{hub}' the role {HubRole}", alreadyIsFine: true);
            return false;
        }
        catch (BrokerIdentityException e) when (!_hubRoleGiven || (_client is { IsConnected: true } && !e.Disconnected))
        {
            LogDynsecProblem(logger, settings.Broker, e.Message);
            return true; // the hub goes on without: enrollment and revocation say why they fail
        }
        catch (BrokerIdentityException)
        {
            // Mosquitto ended the connection as the hub's rights changed: the next connect checks them again.
            return false;
        }
    }

    private static JsonObject Acl(string type, string topic) => new() { ["acltype"] = type, ["topic"] = topic, ["allow"] = true };

    private static void Check(JsonArray answers, int index, string what, bool notFoundIsFine = false, bool alreadyIsFine = false)
    {
        if (answers.Count <= index || answers[index] is not JsonObject a) throw new BrokerIdentityException($"{what}: the dynamic-security plugin gave no answer to that command");
        if (a["error"]?.GetValue<string>() is not { Length: > 0 } error) return;
        if (notFoundIsFine && error.Contains("not found", StringComparison.OrdinalIgnoreCase)) return;
        if (alreadyIsFine && error.Contains("already", StringComparison.OrdinalIgnoreCase)) return;
        throw new BrokerIdentityException($"{what}: the dynamic-security plugin said '{error}'");
    }

    /// <summary>Sends commands in one message and waits for their answers (in order; one per command).</summary>
    private async Task<JsonArray> ControlAsync(JsonObject[] commands)
    {
        if (_client is not { IsConnected: true } client) throw new BrokerIdentityException($"not connected to {settings.Broker}");
        var correlation = Guid.NewGuid().ToString("N");
        foreach (var c in commands) c["correlationData"] = correlation;
        var waiter = new TaskCompletionSource<JsonArray>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[correlation] = waiter;
        try
        {
            var payload = System.Text.Encoding.UTF8.GetBytes(new JsonObject { ["commands"] = new JsonArray([.. commands]) }.ToJsonString());
            var result = await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(ControlTopic).WithPayload(payload)
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).ConfigureAwait(false);
            if (!result.IsSuccess) throw new BrokerIdentityException($"{settings.Broker} refused the publish on {ControlTopic} ({result.ReasonCode}): is --BrokerUser the plugin's admin?");
            return await waiter.Task.WaitAsync(ControlTimeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new BrokerIdentityException($"no answer on {ResponseTopic} within {ControlTimeout.TotalSeconds:0} s: is Mosquitto's dynamic-security plugin loaded, and --BrokerUser its admin?");
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException)
        {
            // A DISCONNECT from the broker here is most often the one that follows a change of the hub's own rights.
            throw new BrokerIdentityException($"sending to {ControlTopic}: {e.Message}", disconnected: e is MQTTnet.Exceptions.MqttClientUnexpectedDisconnectReceivedException);
        }
        finally
        {
            _pending.TryRemove(correlation, out _);
        }
    }

    /// <summary>An answer on the response topic: hands the commands' answers to the waiting call (unknown or unreadable ones are dropped).</summary>
    private void OnControlResponse(ReadOnlySpan<byte> payload)
    {
        try
        {
            if (JsonNode.Parse(payload) is not JsonObject o || o["responses"] is not JsonArray responses || responses.Count == 0) return;
            if (responses[0]?["correlationData"]?.GetValue<string>() is { } c && _pending.TryRemove(c, out var waiter))
            {
                waiter.TrySetResult(responses);
            }
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException)
        {
            LogDynsecProblem(logger, settings.Broker, $"unreadable answer on {ResponseTopic}: {e.Message}");
        }
    }

    [LoggerMessage(EventId = 2205, Level = LogLevel.Warning, Message = "Device {Device} enrolled while {Broker} is away: its login is created there when this replica connects again")]
    private static partial void LogGrantLater(ILogger logger, string device, string broker);

    [LoggerMessage(EventId = 2206, Level = LogLevel.Warning, Message = "Device {Device} revoked while {Broker} is away: its login is deleted there when a replica connects again")]
    private static partial void LogRevokeLater(ILogger logger, string device, string broker);

    [LoggerMessage(EventId = 2207, Level = LogLevel.Warning, Message = "{Count} enrolled device(s) have no login at {Broker} and cannot connect: {Devices}. They were enrolled before --BrokerDynsec was turned on (the hub keeps only password hashes, which the plugin cannot import), or while the broker was away by a replica that stopped before it came back. Enroll each again: edgeml devices enroll ID, then edgeml-agent enroll on the device")]
    private static partial void LogMissingLogins(ILogger logger, int count, string broker, string devices);

    [LoggerMessage(EventId = 2208, Level = LogLevel.Information, Message = "Devices' logins at {Broker} reconciled: {Logins} device login(s) there, {Deleted} of revoked devices deleted, {Missing} missing")]
    private static partial void LogReconciled(ILogger logger, string broker, int logins, int deleted, int missing);

    [LoggerMessage(EventId = 2203, Level = LogLevel.Information, Message = "Devices' identities at {Broker} follow the hub (Mosquitto dynamic-security plugin)")]
    private static partial void LogDynsecReady(ILogger logger, string broker);

    [LoggerMessage(EventId = 2204, Level = LogLevel.Error, Message = "--BrokerDynsec: devices cannot be enrolled or revoked at {Broker}: {Problem}")]
    private static partial void LogDynsecProblem(ILogger logger, string broker, string problem);
}

/// <summary>The external broker's dynamic-security plugin did not take a device's identity (message: what and why, one line).</summary>
public sealed class BrokerIdentityException(string message, bool disconnected = false) : Exception(message)
{
    /// <summary>The broker ended the connection while the command waited (after the hub's own rights changed, the expected case).</summary>
    public bool Disconnected { get; } = disconnected;
}
