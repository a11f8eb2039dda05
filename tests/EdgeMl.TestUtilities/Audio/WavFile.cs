using System.Buffers.Binary;
using System.Text;

namespace EdgeMl.TestUtilities.Audio;

/// <summary>Writes RIFF/WAVE files for tests: 16-bit PCM as the agent replays it, and damaged or foreign variants.</summary>
public static class WavFile
{
    /// <summary>
    /// Interleaved samples in int16 scale (clipped to ±32767) as 16-bit PCM. <paramref name="formatCode"/>,
    /// <paramref name="bits"/>, <paramref name="declaredDataBytes"/> and <paramref name="blockAlign"/> let a test write what a bad
    /// file says about itself.
    /// </summary>
    public static void Write(string path, ReadOnlySpan<float> interleaved, int rate, int channels = 1,
        ushort formatCode = 1, ushort bits = 16, uint? declaredDataBytes = null, bool withListChunk = false, ushort? blockAlign = null)
    {
        var data = new byte[interleaved.Length * 2];
        for (var i = 0; i < interleaved.Length; i++)
        {
            BinaryPrimitives.WriteInt16LittleEndian(data.AsSpan(i * 2), (short)Math.Clamp(MathF.Round(interleaved[i]), -32768, 32767));
        }

        using var f = File.Create(path);
        using var w = new BinaryWriter(f, Encoding.ASCII);
        var list = withListChunk ? "INFOISFT\x05\0\0\0test\0\0"u8.ToArray() : [];
        w.Write("RIFF"u8);
        w.Write((uint)(4 + 24 + (list.Length > 0 ? 8 + list.Length : 0) + 8 + data.Length));
        w.Write("WAVE"u8);
        w.Write("fmt "u8);
        w.Write(16u);
        w.Write(formatCode);
        w.Write((ushort)channels);
        w.Write(rate);
        w.Write(rate * channels * bits / 8);
        w.Write(blockAlign ?? (ushort)(channels * bits / 8));
        w.Write(bits);
        if (list.Length > 0)
        {
            w.Write("LIST"u8);
            w.Write((uint)list.Length);
            w.Write(list);
        }

        w.Write("data"u8);
        w.Write(declaredDataBytes ?? (uint)data.Length);
        w.Write(data);
    }

    /// <summary>Linear-interpolation resampling (enough for speech made at 22.05 kHz by espeak-ng, to 16 kHz).</summary>
    public static float[] Resample(float[] x, int from, int to)
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
}
