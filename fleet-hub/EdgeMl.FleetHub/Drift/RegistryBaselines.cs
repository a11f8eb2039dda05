using System.Collections.Concurrent;
using EdgeMl.FleetHub.Store;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.FleetHub.Drift;

/// <summary>
/// The drift baselines of the models in the hub's registry (each package manifest's <c>baseline</c>), by name and
/// version: what the hub judges drift against. Versions are immutable, so a baseline read once is kept.
/// </summary>
public sealed partial class RegistryBaselines(IHubStore store, ILogger<RegistryBaselines> logger)
{
    private readonly ConcurrentDictionary<string, DriftBaseline> _known = new(StringComparer.Ordinal);

    /// <summary>The baseline of <paramref name="name"/>@<paramref name="version"/>; null when the registry has no such model or it has no baseline.</summary>
    public DriftBaseline? For(string name, string version)
    {
        var key = $"{name}@{version}";
        if (_known.TryGetValue(key, out var known)) return known;
        if (store.FindModel(name, version) is not { } model) return null;
        try
        {
            using var package = store.OpenPackage(name, version);
            if (package is null) return null;
            var baseline = ModelPackage.Read(package, $"the registry's package of {key}").Manifest.Baseline;
            return baseline is null ? null : _known.GetOrAdd(key, baseline);
        }
        catch (ModelPackageException e)
        {
            LogUnreadable(logger, key, e.Message);
            return null;
        }
    }

    [LoggerMessage(EventId = 2501, Level = LogLevel.Error, Message = "The registry's package of {Model} cannot be read for its drift baseline: {Error}")]
    private static partial void LogUnreadable(ILogger logger, string model, string error);
}
