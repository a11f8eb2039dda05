namespace EdgeMl.Protocol.Wire;

/// <summary>
/// Which names a device may have. A device id is an MQTT client id, a user name and a topic level, so it must not
/// look like any of the hub's own identities: the hub's client ids (<c>edgeml-hub…</c>), the alert topic
/// (<c>edgeml/alerts/…</c>), alert consumers (<c>api-…</c>), or anything MQTT brokers treat specially (<c>$…</c>).
/// </summary>
public static class DeviceIds
{
    /// <summary>1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit.</summary>
    public const string Rule = "1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit";

    /// <summary>Null when <paramref name="id"/> may be a device id; else why not (one sentence, names the rule).</summary>
    public static string? Problem(string? id)
    {
        if (string.IsNullOrEmpty(id) || id.Length > 64 || !char.IsAsciiLetterOrDigit(id[0])
            || id.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-')))
        {
            return $"device id '{id}' is not valid: {Rule} (no '/', '+', '#' or '$': it is an MQTT topic level)";
        }

        foreach (var prefix in ReservedPrefixes)
        {
            if (id.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
            {
                return $"device id '{id}' is reserved: ids starting with '{prefix}' belong to the hub's own identities (hub, alerts, API clients)";
            }
        }

        if (ReservedNames.Contains(id, StringComparer.OrdinalIgnoreCase)) return $"device id '{id}' is reserved for the hub's own identities";
        return RoutePaths.Contains(id, StringComparer.OrdinalIgnoreCase)
            ? $"device id '{id}' is reserved: /api/devices/{id} is one of the hub's own paths"
            : null;
    }

    private static readonly string[] ReservedPrefixes = ["edgeml", "alerts", "api-", "api_", "$"];
    private static readonly string[] ReservedNames = ["api", "hub", "broker", "admin", "root"];

    /// <summary>Names under <c>/api/devices/</c> that are the hub's own routes (the dashboard's fleet table), not devices.</summary>
    private static readonly string[] RoutePaths = ["page"];
}
