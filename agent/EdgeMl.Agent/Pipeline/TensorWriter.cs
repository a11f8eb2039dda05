using EdgeMl.Protocol.Packages;

namespace EdgeMl.Agent.Pipeline;

/// <summary>Turns a window ([T, C], time order) into a model input: normalization from the manifest, then the model's layout.</summary>
public sealed class TensorWriter
{
    private readonly float[] _scale;
    private readonly float[] _shift;
    private readonly bool _channelsFirst;
    private readonly int _channels;

    public TensorWriter(InputSpec input)
    {
        var src = input.Source!;
        _channels = src.Channels.Count;
        _channelsFirst = src.Layout == InputLayouts.ChannelsFirst;
        _scale = new float[_channels];
        _shift = new float[_channels];
        for (var c = 0; c < _channels; c++)
        {
            // (x - mean) / std as one multiply-add: x * (1/std) + (-mean/std).
            var mean = input.Normalization?.Mean[c] ?? 0f;
            var std = input.Normalization?.Std[c] ?? 1f;
            _scale[c] = 1f / std;
            _shift[c] = -mean / std;
        }
    }

    public void Write(ReadOnlySpan<float> window, Span<float> tensor)
    {
        var c = _channels;
        var t = window.Length / c;
        if (_channelsFirst)
        {
            for (var ch = 0; ch < c; ch++)
            {
                var scale = _scale[ch];
                var shift = _shift[ch];
                var dst = tensor.Slice(ch * t, t);
                for (var i = 0; i < t; i++)
                {
                    dst[i] = window[i * c + ch] * scale + shift;
                }
            }
        }
        else
        {
            for (var i = 0; i < t; i++)
            {
                for (var ch = 0; ch < c; ch++)
                {
                    tensor[i * c + ch] = window[i * c + ch] * _scale[ch] + _shift[ch];
                }
            }
        }
    }
}
