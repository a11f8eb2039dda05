using EdgeMl.Protocol.Packages;

namespace EdgeMl.TestUtilities;

/// <summary>Where the bundled packages are, and helpers that write packages into a temporary folder.</summary>
public static class TestPackages
{
    public static string RepositoryRoot { get; } = FindRoot();

    public static string VibrationInt8 => Path.Combine(RepositoryRoot, "models", "vibration", "vibration-fault-int8.edgepkg");
    public static string VibrationFp32 => Path.Combine(RepositoryRoot, "models", "vibration", "vibration-fault-fp32.edgepkg");
    public static string VibrationTestData => Path.Combine(RepositoryRoot, "models", "vibration", "test");

    /// <summary>A manifest for one windowed input fed by <paramref name="channels"/>.</summary>
    public static ModelManifest Manifest(string inputName, long[] inputShape, string[] channels, int window, string outputName, long[] outputShape, string kind = OutputKinds.Regression, List<string>? labels = null) => new()
    {
        Name = "test-model",
        Version = "0.1.0",
        Inputs =
        [
            new InputSpec
            {
                Name = inputName,
                Shape = [.. inputShape],
                Source = new InputSource { Channels = [.. channels], Window = window, Hop = window, SampleRateHz = 100, Layout = InputLayouts.ChannelsLast },
            },
        ],
        Outputs = [new OutputSpec { Name = outputName, Shape = [.. outputShape], Kind = kind, Labels = labels, Threshold = kind == OutputKinds.Anomaly ? 0.5f : null }],
    };

    public static string Write(string directory, ModelManifest manifest, byte[] model, string name = "model.edgepkg")
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, name);
        ModelPackage.Write(path, manifest, model);
        return path;
    }

    /// <summary>
    /// The bundled int8 package as another version (the manifest says so; the model is the same). With
    /// <paramref name="reverseLabels"/> its class labels are reversed: a model that disagrees with the original.
    /// </summary>
    public static string Variant(string directory, string version, bool reverseLabels = false)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, $"vibration-{version}{(reverseLabels ? "-reversed" : "")}.edgepkg");
        File.Copy(VibrationInt8, path, overwrite: true);
        using var zip = System.IO.Compression.ZipFile.Open(path, System.IO.Compression.ZipArchiveMode.Update);
        var entry = zip.GetEntry("manifest.json")!;
        string text;
        using (var r = new StreamReader(entry.Open())) text = r.ReadToEnd();
        entry.Delete();
        text = text.Replace("\"version\": \"1.0.0\"", $"\"version\": \"{version}\"", StringComparison.Ordinal);
        if (reverseLabels)
        {
            text = System.Text.RegularExpressions.Regex.Replace(text, "\"labels\": \\[\\s*\"normal\",\\s*\"imbalance\",\\s*\"bearing_fault\"\\s*\\]",
                "\"labels\": [\"bearing_fault\", \"imbalance\", \"normal\"]");
        }

        using var w = new StreamWriter(zip.CreateEntry("manifest.json").Open(), new System.Text.UTF8Encoding(false));
        w.Write(text);
        return path;
    }

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeMl.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("EdgeMl.sln not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>A temporary folder deleted at dispose.</summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "edgeml-test-" + Guid.NewGuid().ToString("N")[..12]);

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
