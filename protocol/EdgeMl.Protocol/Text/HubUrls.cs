namespace EdgeMl.Protocol.Text;

/// <summary>
/// The one meaning of <c>--hub</c> for every EdgeMl program: <c>http(s)://HOST[:PORT][/]</c> as written, or a bare
/// <c>HOST[:PORT]</c> meaning <c>http://HOST:PORT</c> with the hub's default port <see cref="DefaultPort"/> when none
/// is given.
/// </summary>
public static class HubUrls
{
    /// <summary>The port <c>edgeml-hub</c> is documented on, and what a bare host means.</summary>
    public const int DefaultPort = 8080;

    /// <summary>The hub's base address; false (with <paramref name="error"/>) for anything but an http(s) origin.</summary>
    public static bool TryParse(string? value, out Uri hub, out string error)
    {
        hub = null!;
        error = $"'{value}' is not HOST[:PORT] or http(s)://HOST[:PORT]";
        if (string.IsNullOrWhiteSpace(value)) return false;
        var explicitScheme = value.Contains("://", StringComparison.Ordinal);
        if (!Uri.TryCreate(explicitScheme ? value : $"http://{value}", UriKind.Absolute, out var uri)
            || uri.Scheme is not ("http" or "https") || uri.UserInfo.Length > 0 || uri.Query.Length > 0 || uri.Fragment.Length > 0 || uri.AbsolutePath != "/")
        {
            return false;
        }

        // A bare host without a port: the hub's port, not HTTP's 80 (an explicit :80 stays 80).
        var portGiven = explicitScheme || !uri.IsDefaultPort || value.TrimEnd('/').EndsWith(":80", StringComparison.Ordinal);
        hub = portGiven ? uri : new UriBuilder(uri) { Port = DefaultPort }.Uri;
        return true;
    }
}
