using System.IO.Compression;
using System.Text;
using EdgeMl.Cli;
using EdgeMl.TestUtilities;

namespace EdgeMl.ModelTools.Tests;

/// <summary>
/// Files a user hands to <c>edgeml model quantize|evaluate|package</c> that are damaged or wrong: each ends as one line
/// naming the file and what is wrong, exit 1 — never a stack trace (issue: a truncated .npy header threw
/// ArgumentOutOfRangeException with a stack trace).
/// </summary>
public sealed class ToolchainInputErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgeml-input-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, byte[], string> DamagedData() => new()
    {
        { "truncated-header.npy", [0x93, .. "NUMPY"u8, 1, 0, 0x76, 0, (byte)'{'], "truncated .npy header" },
        { "magic-only.npy", [0x93, .. "NUMPY"u8], "version" },
        { "version-9.npy", [0x93, .. "NUMPY"u8, 9, 0, 10, 0, .. "{}        "u8], "version 9" },
        { "no-shape.npy", Npy("{'descr': '<f4', 'fortran_order': False, }"), "malformed .npy header" },
        { "negative-shape.npy", Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 96), }"), "'-3'" },
        { "huge-shape.npy", Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }"), "more values" },
        { "short-data.npy", Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 96), }"), "bytes of data" },
        { "text.npy", "hello"u8.ToArray(), "not a .npy file" },
        { "empty.npy", [], "is empty" },
        { "corrupt.npz", [.. "PK\u0003\u0004junk"u8], "not a readable .npz" },
    };

    [Theory]
    [MemberData(nameof(DamagedData))]
    public async Task Damaged_calibration_and_evaluation_data_is_one_line_naming_the_file(string name, byte[] content, string expected)
    {
        var data = Path.Combine(_dir, name);
        await File.WriteAllBytesAsync(data, content);
        var model = Fp32Model();
        foreach (var args in new string[][]
                 {
                     ["model", "quantize", model, "--calibration", data, "--out", Path.Combine(_dir, "out.onnx")],
                     ["model", "evaluate", "--reference", model, "--candidate", model, "--data", data],
                 })
        {
            var (code, stderr) = await RunAsync(args);
            Assert.True(code == 1, $"{string.Join(' ', args)} → {code}: {stderr}");
            var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.StartsWith("error: ", line, StringComparison.Ordinal);
            Assert.DoesNotContain("unexpected", line, StringComparison.Ordinal);
            Assert.Contains(name, line, StringComparison.Ordinal);
            Assert.Contains(expected, line, StringComparison.Ordinal);
            Assert.False(File.Exists(Path.Combine(_dir, "out.onnx")), "nothing written");
        }
    }

    [Theory]
    [InlineData("{bad", "manifest")]
    [InlineData("[]", "manifest")]
    [InlineData("", "manifest")]
    [InlineData("{\"constants\": null}", "constants")]
    [InlineData("{\"inputs\": [null]}", "inputs[0] is null")]
    public async Task A_damaged_manifest_is_one_line_naming_the_file(string text, string expected)
    {
        var manifest = Path.Combine(_dir, "manifest.json");
        await File.WriteAllTextAsync(manifest, text);
        var (code, stderr) = await RunAsync(["model", "package", "--model", Fp32Model(), "--manifest", manifest, "--out", Path.Combine(_dir, "x.edgepkg")]);
        Assert.Equal(1, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("manifest.json", line, StringComparison.Ordinal);
        Assert.Contains(expected, line, StringComparison.Ordinal);
        Assert.DoesNotContain("unexpected", line, StringComparison.Ordinal);
    }

    private static byte[] Npy(string header)
    {
        var text = header.PadRight(118) + "\n";
        return [0x93, .. "NUMPY"u8, 1, 0, (byte)text.Length, 0, .. Encoding.Latin1.GetBytes(text)];
    }

    private string Fp32Model()
    {
        var path = Path.Combine(_dir, "model.onnx");
        if (File.Exists(path)) return path;
        using var zip = ZipFile.OpenRead(TestPackages.VibrationFp32);
        zip.GetEntry("model.onnx")!.ExtractToFile(path);
        return path;
    }

    private static async Task<(int Code, string Err)> RunAsync(string[] args)
    {
        var stderr = new StringWriter();
        var code = await EdgeMlCli.MainAsync(args, TextWriter.Null, stderr);
        return (code, stderr.ToString());
    }
}
