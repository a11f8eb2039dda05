using System.IO.Compression;
using System.Text;
using EdgeMl.Protocol.Packages;
using EdgeMl.TestUtilities;

namespace EdgeMl.Protocol.Tests;

public class ModelPackageTests
{
    private static readonly byte[] SomeModel = [1, 2, 3, 4, 5];

    private static ModelManifest Valid() =>
        TestPackages.Manifest("x", [1, 4, 2], ["a", "b"], 4, "y", [1, 3], OutputKinds.Classification, ["p", "q", "r"]);

    private static string Zip(TempDirectory dir, params (string Name, byte[] Data)[] entries)
    {
        var path = dir.File("p.edgepkg");
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        foreach (var (name, data) in entries)
        {
            using var s = zip.CreateEntry(name).Open();
            s.Write(data);
        }

        return path;
    }

    [Fact]
    public void Written_package_reads_back_with_checksum_size_and_manifest()
    {
        using var dir = new TempDirectory();
        var path = TestPackages.Write(dir.Path, Valid(), SomeModel);
        var p = ModelPackage.Open(path);
        Assert.Equal(SomeModel, p.ModelBytes);
        Assert.Equal(ModelPackage.Sha256Hex(SomeModel), p.Manifest.Model.Sha256);
        Assert.Equal(5, p.Manifest.Model.SizeBytes);
        Assert.Equal(["p", "q", "r"], p.Manifest.Outputs[0].Labels);
        Assert.Null(p.Signature);
    }

    [Fact]
    public void Writing_the_same_package_twice_gives_identical_bytes()
    {
        using var a = new TempDirectory();
        using var b = new TempDirectory();
        Assert.Equal(File.ReadAllBytes(TestPackages.Write(a.Path, Valid(), SomeModel)), File.ReadAllBytes(TestPackages.Write(b.Path, Valid(), SomeModel)));
    }

    [Fact]
    public void Missing_manifest_is_named()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<ModelPackageException>(() => ModelPackage.Open(Zip(dir, ("model.onnx", SomeModel))));
        Assert.Contains("has no 'manifest.json' entry", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Malformed_manifest_json_names_the_place()
    {
        using var dir = new TempDirectory();
        var json = "{\n  \"name\": \"m\",\n  \"version\": 3\n}";
        var e = Assert.Throws<ModelPackageException>(() => ModelPackage.Open(Zip(dir, ("manifest.json", Encoding.UTF8.GetBytes(json)), ("model.onnx", SomeModel))));
        Assert.Contains("manifest.json: invalid manifest JSON at $.version (line 3)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_manifest_fields_are_refused_so_typos_show()
    {
        var json = "{ \"name\": \"m\", \"versoin\": \"1.0.0\" }";
        var e = Assert.Throws<ModelPackageException>(() => ModelPackage.ParseManifest(Encoding.UTF8.GetBytes(json), "m.json"));
        Assert.Contains("versoin", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Model_that_does_not_hash_to_the_manifest_is_refused()
    {
        using var dir = new TempDirectory();
        var path = TestPackages.Write(dir.Path, Valid(), SomeModel);
        var manifest = ModelPackage.Open(path).ManifestBytes;
        var e = Assert.Throws<ModelPackageException>(() => ModelPackage.Open(Zip(dir, ("manifest.json", manifest), ("model.onnx", [1, 2, 3, 4, 6]))));
        Assert.Contains("SHA-256 of model.onnx is", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Truncated_file_is_reported_as_such()
    {
        using var dir = new TempDirectory();
        var path = TestPackages.Write(dir.Path, Valid(), SomeModel);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length - 30)]);
        var e = Assert.Throws<ModelPackageException>(() => ModelPackage.Open(path));
        Assert.Contains("is not a valid .edgepkg (zip) file — truncated or corrupted?", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bundled_packages_open_and_carry_a_drift_baseline()
    {
        foreach (var path in new[] { TestPackages.VibrationInt8, TestPackages.VibrationFp32 })
        {
            var p = ModelPackage.Open(path);
            var baseline = Assert.IsType<DriftBaseline>(p.Manifest.Baseline);
            Assert.Equal(["ax", "ay", "az"], baseline.Features.Select(f => f.Name));
            Assert.All(baseline.Features, f => Assert.Equal(f.Edges.Count + 1, f.Counts.Count));
            Assert.All(baseline.Features, f => Assert.Equal(f.Count, f.Counts.Sum()));
        }

        Assert.Equal("qdq", ModelPackage.Open(TestPackages.VibrationInt8).Manifest.Quantization!.Format);
    }
}
