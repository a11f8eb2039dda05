namespace EdgeMl.Protocol.Text;

/// <summary>A model version in the registry, written <c>NAME@VERSION</c> (e.g. <c>vibration-anomaly@1.2.0</c>).</summary>
/// <param name="Name">The model's name: what a package's manifest calls it.</param>
/// <param name="Version">The version; registry versions are immutable.</param>
public readonly record struct ModelRef(string Name, string Version)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Name}@{Version}";
}

/// <summary>
/// The one parser of model references for every EdgeMl program and API: <c>NAME@VERSION</c>, split at the last
/// <c>@</c>, both parts non-empty, at most 128 characters each, no control characters or <c>/</c> (they end up in
/// URLs, MQTT topics and file names). <c>NAME</c> alone is accepted only where a version is optional.
/// </summary>
public static class ModelRefs
{
    /// <summary>Longest name and longest version accepted, in characters.</summary>
    public const int MaxPartLength = 128;

    /// <summary>
    /// Parses <paramref name="text"/>; when <paramref name="versionOptional"/>, <c>NAME</c> alone gives an empty
    /// <see cref="ModelRef.Version"/>. On failure <paramref name="error"/> says what was expected (the caller names the option).
    /// </summary>
    public static bool TryParse(string? text, out ModelRef model, out string error, bool versionOptional = false)
    {
        model = default;
        error = versionOptional ? $"'{text}' is not NAME or NAME@VERSION" : $"'{text}' is not NAME@VERSION";
        if (string.IsNullOrWhiteSpace(text)) return false;
        var at = text.LastIndexOf('@');
        var (name, version) = at >= 0 ? (text[..at], text[(at + 1)..]) : (text, "");
        if (!Valid(name) || (version.Length == 0 ? at >= 0 || !versionOptional : !Valid(version))) return false;
        model = new ModelRef(name, version);
        return true;
    }

    /// <summary>Parses <paramref name="text"/> or throws <see cref="FormatException"/> with the reason.</summary>
    /// <exception cref="FormatException">Not <c>NAME@VERSION</c>.</exception>
    public static ModelRef Parse(string? text) => TryParse(text, out var m, out var error) ? m : throw new FormatException($"model {error}");

    private static bool Valid(string part) =>
        part.Length is > 0 and <= MaxPartLength && part.Trim().Length == part.Length && !part.Any(c => char.IsControl(c) || c is '/' or '@' or '#' or '+');
}
