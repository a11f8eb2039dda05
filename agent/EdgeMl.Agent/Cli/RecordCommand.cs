using System.Globalization;
using System.Text;
using EdgeMl.Agent.Sensors;

using EdgeMl.CommandLine;

namespace EdgeMl.Agent.Cli;

/// <summary>
/// <c>record --sensor SPEC --samples N --out FILE.csv</c>: reads a sensor as fast as it answers and writes
/// the replay CSV format (header of channel names, one row per sample). Used to make training and test
/// data from the simulator, and to capture a real sensor for replay.
/// </summary>
public static class RecordCommand
{
    public static int Run(ParsedArgs args)
    {
        var spec = args.Get("sensor") ?? throw new UsageException("record needs --sensor SPEC");
        var samples = args.GetLong("samples") ?? throw new UsageException("record needs --samples N");
        var output = args.Get("out") ?? throw new UsageException("record needs --out FILE.csv");
        var seed = (int)(args.GetLong("seed") ?? 1);

        using var sensor = SensorFactory.Create(spec, seed, "--sensor");
        using var writer = new StreamWriter(output, append: false, new UTF8Encoding(false));
        writer.WriteLine(string.Join(',', sensor.Channels));
        var values = new float[sensor.Channels.Count];
        var line = new StringBuilder();
        for (long n = 0; n < samples && sensor.Read(values); n++)
        {
            line.Clear();
            for (var i = 0; i < values.Length; i++)
            {
                if (i > 0) line.Append(',');
                line.Append(values[i].ToString("R", CultureInfo.InvariantCulture));
            }

            writer.WriteLine(line);
        }

        return 0;
    }
}
