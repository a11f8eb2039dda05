using System.Globalization;

namespace EdgeMl.Agent.Sensors.Replay;

/// <summary>
/// Replays a recorded CSV file: a header row of channel names, then one row per sample. A column
/// named <c>time</c>, <c>t</c> or <c>timestamp</c> is skipped (the sampler paces by the rate given).
/// A bad cell is reported with file, line and column.
/// </summary>
public sealed class CsvReplaySensor : ISensorSource
{
    private static readonly string[] TimeColumns = ["time", "t", "timestamp"];
    private readonly string _path;
    private readonly bool _loop;
    private readonly int[] _columns;
    private StreamReader _reader;
    private int _line;

    public CsvReplaySensor(string path, double sampleRateHz, bool loop)
    {
        _path = path;
        _loop = loop;
        SampleRateHz = sampleRateHz;
        if (!File.Exists(path))
        {
            throw new ConfigurationException("sensor", $"replay file '{path}' does not exist");
        }

        _reader = new StreamReader(path);
        var header = _reader.ReadLine() ?? throw new ConfigurationException("sensor", $"replay file '{path}' is empty (a header row of channel names is expected)");
        _line = 1;
        var names = header.Split(',').Select(h => h.Trim()).ToArray();
        _columns = Enumerable.Range(0, names.Length).Where(i => !TimeColumns.Contains(names[i], StringComparer.OrdinalIgnoreCase)).ToArray();
        Channels = _columns.Select(i => names[i]).ToArray();
        if (Channels.Count == 0)
        {
            throw new ConfigurationException("sensor", $"{path}:1: header names no channel columns");
        }

        if (loop && !HasDataRow(path))
        {
            throw new ConfigurationException("sensor", $"replay file '{path}' has a header but no data rows: there is nothing to loop over");
        }
    }

    private static bool HasDataRow(string path)
    {
        using var reader = new StreamReader(path);
        reader.ReadLine();
        for (var line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            if (line.Length > 0) return true;
        }

        return false;
    }

    public string Name => $"replay:{Path.GetFileName(_path)}";
    public IReadOnlyList<string> Channels { get; }
    public double SampleRateHz { get; }
    public bool IsVirtual => true;

    public bool Read(Span<float> values)
    {
        var line = _reader.ReadLine();
        _line++;
        while (line is not null && line.Length == 0)
        {
            line = _reader.ReadLine();
            _line++;
        }

        if (line is null)
        {
            if (!_loop) return false;
            _reader.Dispose();
            _reader = new StreamReader(_path);
            _reader.ReadLine();
            _line = 1;
            return Read(values);
        }

        var span = line.AsSpan();
        var column = 0;
        var written = 0;
        var next = 0;
        foreach (var range in span.Split(','))
        {
            if (next < _columns.Length && _columns[next] == column)
            {
                var cell = span[range].Trim();
                if (!float.TryParse(cell, NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
                {
                    throw new InvalidDataException($"{_path}:{_line}: column {column + 1} ('{Channels[next]}'): '{cell}' is not a number");
                }

                values[written++] = v;
                next++;
            }

            column++;
        }

        if (written != _columns.Length)
        {
            throw new InvalidDataException($"{_path}:{_line}: expected {_columns.Length} channel values, found {written}");
        }

        return true;
    }

    public void Dispose() => _reader.Dispose();
}
