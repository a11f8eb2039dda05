using EdgeMl.Agent.Pipeline;
using EdgeMl.Protocol.Packages;

namespace EdgeMl.Agent.Tests.Pipeline;

public class WindowingTests
{
    [Fact]
    public void Windows_are_due_when_full_then_every_hop_and_come_out_in_time_order()
    {
        // Source has 3 channels; the model wants channels 2 and 0.
        var w = new SlidingWindow([2, 0], length: 4, hop: 2);
        var due = new List<int>();
        var out4 = new float[8];
        var snapshots = new List<float[]>();
        for (var n = 1; n <= 8; n++)
        {
            if (w.Add([n, 100 + n, 200 + n]))
            {
                due.Add(n);
                w.CopyTo(out4);
                snapshots.Add(out4.ToArray());
            }
        }

        Assert.Equal([4, 6, 8], due);
        Assert.Equal([201f, 1, 202, 2, 203, 3, 204, 4], snapshots[0]);
        Assert.Equal([205f, 5, 206, 6, 207, 7, 208, 8], snapshots[2]);
    }

    [Fact]
    public void Tensor_writer_normalizes_per_channel_in_the_models_layout()
    {
        var input = new InputSpec
        {
            Name = "x",
            Shape = [1, 2, 3],
            Source = new InputSource { Channels = ["a", "b"], Window = 3, Hop = 3, SampleRateHz = 1, Layout = InputLayouts.ChannelsFirst },
            Normalization = new Normalization { Mean = [1, 10], Std = [2, 5] },
        };
        float[] window = [1, 10, 3, 15, 5, 20]; // [T, C]
        var tensor = new float[6];
        new TensorWriter(input).Write(window, tensor);
        Assert.Equal([0f, 1, 2, 0, 1, 2], tensor); // [C, T]

        input.Source.Layout = InputLayouts.ChannelsLast;
        new TensorWriter(input).Write(window, tensor);
        Assert.Equal([0f, 0, 1, 1, 2, 2], tensor);
    }
}
