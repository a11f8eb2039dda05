using MQTTnet;
using MQTTnet.Adapter;
using MQTTnet.Diagnostics.Logger;
using MQTTnet.Formatter;
using MQTTnet.Implementations;

namespace EdgeMl.Agent.Sync;

/// <summary>
/// MQTTnet's client adapter for TCP (and TLS over TCP) only. The default factory also knows WebSockets,
/// which roots HttpClient and the WebSocket stack in the native binary (about 1 MB) for a transport a
/// device agent does not use.
/// </summary>
public sealed class TcpOnlyAdapterFactory : IMqttClientAdapterFactory
{
    public IMqttChannelAdapter CreateClientAdapter(MqttClientOptions options, MqttPacketInspector packetInspector, IMqttNetLogger logger)
    {
        if (options.ChannelOptions is not MqttClientTcpOptions)
        {
            throw new NotSupportedException("the agent connects to its broker over TCP (mqtt://) only");
        }

        var formatter = new MqttPacketFormatterAdapter(options.ProtocolVersion, new MqttBufferWriter(options.WriterBufferSize, options.WriterBufferSizeMax));
        return new MqttChannelAdapter(new MqttTcpChannel(options), formatter, logger)
        {
            AllowPacketFragmentation = options.AllowPacketFragmentation,
            PacketInspector = packetInspector,
        };
    }
}
