using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace EdgeMl.Agent.Sensors.Replay;

/// <summary>
/// Replays a 16-bit PCM RIFF/WAVE file (mono or multi-channel; <c>WAVE_FORMAT_PCM</c>, or <c>WAVE_FORMAT_EXTENSIBLE</c>
/// with a PCM sub-format) one frame per <see cref="Read"/>, each sample scaled to [-1, 1) (÷ 32768, as audio libraries
/// and speech models such as silero VAD expect). The rate is the file's. Channels are named in the sensor spec
/// (<c>channels=left+right</c>); without names a mono file's channel is <c>audio</c>, a multi-channel file's
/// <c>ch1</c>…<c>chN</c>. The header is read and checked when the sensor is made: anything but 16-bit PCM, a data chunk
/// longer than the file or not a whole number of frames, or no samples is a <see cref="ConfigurationException"/>
/// naming the file and what is wrong.
/// </summary>
public sealed class WavReplaySensor : ISensorSource, IRecordedSource
{
    private const ushort FormatPcm = 1;
    private const ushort FormatExtensible = 0xFFFE;
    private readonly string _path;
    private readonly bool _loop;
    private readonly long _dataOffset;
    private readonly FileStream _stream;
    private readonly byte[] _frame;
    private long _frameIndex;

    /// <param name="path">the WAV file</param>
    /// <param name="channelNames">one name per channel in the file, or null for the defaults</param>
    /// <param name="loop">start again at the first frame after the last (else <see cref="Read"/> returns false there)</param>
    /// <param name="where">the configuration key for errors (<c>Agent:Sensor</c>)</param>
    /// <exception cref="ConfigurationException">The file is missing, not 16-bit PCM WAV, truncated, or the names do not fit.</exception>
    public WavReplaySensor(string path, IReadOnlyList<string>? channelNames, bool loop, string where = "sensor")
    {
        _path = path;
        _loop = loop;
        if (!File.Exists(path)) throw new ConfigurationException(where, $"replay file '{path}' does not exist");
        try
        {
            _stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 64 * 1024);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigurationException(where, $"replay file '{path}' cannot be opened: {e.Message}");
        }

        try
        {
            (var channels, RecordedRateHz, _dataOffset, var dataBytes) = ReadHeader(_stream, path, where);
            var blockAlign = channels * 2;
            Frames = dataBytes / blockAlign;
            _frame = new byte[blockAlign];
            if (channelNames is null)
            {
                Channels = channels == 1 ? ["audio"] : Enumerable.Range(1, channels).Select(i => $"ch{i}").ToArray();
            }
            else if (channelNames.Count != channels)
            {
                throw new ConfigurationException(where, $"'{path}' has {channels} channel(s) but {channelNames.Count} name(s) are given ({string.Join("+", channelNames)})");
            }
            else
            {
                Channels = [.. channelNames];
            }

            _stream.Position = _dataOffset;
        }
        catch
        {
            _stream.Dispose();
            throw;
        }
    }

    public string Name => $"replay:{Path.GetFileName(_path)}";
    public IReadOnlyList<string> Channels { get; }
    public double SampleRateHz => RecordedRateHz;
    public bool IsVirtual => true;
    public string Recording => _path;
    public long Frames { get; }
    public double RecordedRateHz { get; }

    public bool Read(Span<float> values)
    {
        if (_frameIndex == Frames)
        {
            if (!_loop) return false;
            _stream.Position = _dataOffset;
            _frameIndex = 0;
        }

        if (_stream.ReadAtLeast(_frame, _frame.Length, throwOnEndOfStream: false) != _frame.Length)
        {
            // The header said more: the file was cut short after it was opened.
            throw new InvalidDataException($"{_path}: ends at frame {_frameIndex} of the {Frames} its header declares");
        }

        _frameIndex++;
        for (var c = 0; c < values.Length; c++)
        {
            values[c] = BinaryPrimitives.ReadInt16LittleEndian(_frame.AsSpan(c * 2)) / 32768f;
        }

        return true;
    }

    public void Dispose() => _stream.Dispose();

    /// <summary>Walks the RIFF chunks up to <c>data</c>: channels, rate, where the samples start and how many bytes they hold.</summary>
    private static (int Channels, int Rate, long DataOffset, long DataBytes) ReadHeader(FileStream s, string path, string where)
    {
        ConfigurationException Bad(string problem) => new(where, $"replay file '{path}': {problem}");
        Span<byte> head = stackalloc byte[12];
        if (s.ReadAtLeast(head, 12, throwOnEndOfStream: false) < 12 || !head[..4].SequenceEqual("RIFF"u8) || !head[8..12].SequenceEqual("WAVE"u8))
        {
            throw Bad("not a RIFF/WAVE file (16-bit PCM .wav expected)");
        }

        var length = s.Length;
        int channels = 0, rate = 0;
        var chunk = new byte[8];
        while (true)
        {
            var at = s.Position;
            if (s.ReadAtLeast(chunk, 8, throwOnEndOfStream: false) < 8)
            {
                throw Bad(channels == 0 ? "no 'fmt ' chunk" : "no 'data' chunk");
            }

            var id = Encoding.ASCII.GetString(chunk, 0, 4);
            var size = BinaryPrimitives.ReadUInt32LittleEndian(chunk.AsSpan(4));
            var body = at + 8;
            if (id == "fmt ")
            {
                if (size < 16 || body + size > length) throw Bad($"'fmt ' chunk of {size} bytes is too short or runs past the end of the file");
                var fmt = new byte[Math.Min(size, 64)];
                s.ReadExactly(fmt);
                var format = BinaryPrimitives.ReadUInt16LittleEndian(fmt);
                channels = BinaryPrimitives.ReadUInt16LittleEndian(fmt.AsSpan(2));
                rate = BinaryPrimitives.ReadInt32LittleEndian(fmt.AsSpan(4));
                var blockAlign = BinaryPrimitives.ReadUInt16LittleEndian(fmt.AsSpan(12));
                var bits = BinaryPrimitives.ReadUInt16LittleEndian(fmt.AsSpan(14));
                if (format == FormatExtensible && fmt.Length >= 26) format = BinaryPrimitives.ReadUInt16LittleEndian(fmt.AsSpan(24)); // the sub-format GUID starts with the format code
                if (format != FormatPcm) throw Bad($"format code {format}{FormatName(format)} is not PCM; 16-bit PCM expected (convert: sox IN -b 16 -e signed-integer OUT.wav)");
                if (bits != 16) throw Bad($"{bits}-bit PCM; 16-bit expected (convert: sox IN -b 16 OUT.wav)");
                if (channels == 0) throw Bad("0 channels");
                if (rate <= 0) throw Bad($"sample rate {rate} Hz");
                // A header whose frame size disagrees with its channels × 16 bit is damaged: which of the two is right cannot be told.
                if (blockAlign != channels * 2) throw Bad($"the header's frame size (block align) is {blockAlign} bytes, not {channels} channel(s) × 2 bytes");
            }
            else if (id == "data")
            {
                if (channels == 0) throw Bad("'data' chunk before the 'fmt ' chunk");
                var available = length - body;
                if (size > available)
                {
                    throw Bad($"truncated: the data chunk declares {size} bytes but {available} follow (a cut download, or written as a stream without its final size)");
                }

                var frame = channels * 2;
                if (size % frame != 0) throw Bad($"truncated: the data chunk holds {size} bytes, not a whole number of {frame}-byte frames ({channels} channel(s) × 16 bit)");
                if (size == 0) throw Bad("the data chunk holds no samples");
                return (channels, rate, body, size);
            }

            // Any other chunk (LIST, fact, …) is skipped; chunks are padded to an even size.
            var next = body + size + (size & 1);
            if (next > length) throw Bad($"chunk '{Printable(id)}' of {size} bytes runs past the end of the file (truncated)");
            s.Position = next;
        }
    }

    private static string FormatName(int format) => format switch
    {
        2 => " (ADPCM)",
        3 => " (IEEE float)",
        6 => " (A-law)",
        7 => " (µ-law)",
        0x55 => " (MP3)",
        _ => "",
    };

    private static string Printable(string id) => string.Concat(id.Select(c => c is >= ' ' and <= '~' ? c : '?'));

    /// <summary>Channel names from a sensor spec's <c>channels=a+b</c>, or null when absent.</summary>
    internal static IReadOnlyList<string>? ParseChannels(string? text, string where)
    {
        if (text is null) return null;
        var names = text.Split('+', StringSplitOptions.TrimEntries);
        if (names.Any(n => n.Length == 0)) throw new ConfigurationException(where, $"channels '{text}': names are joined with '+' (e.g. channels=left+right) and none may be empty");
        var dup = names.GroupBy(n => n, StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ConfigurationException(where, $"channels '{text}': '{dup.Key}' is named twice");
        return names;
    }

    /// <summary>Seconds of audio in <paramref name="frames"/> at <paramref name="rate"/>, for messages.</summary>
    internal static string Seconds(long frames, double rate) => (frames / rate).ToString("0.###", CultureInfo.InvariantCulture);
}
