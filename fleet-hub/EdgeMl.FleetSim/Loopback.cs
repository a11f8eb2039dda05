using System.Net;
using System.Net.Sockets;

namespace EdgeMl.FleetSim;

public static class Loopback
{
    /// <summary>A TCP port on 127.0.0.1 free at this moment (for a hub, a broker or a relay started next).</summary>
    public static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        var port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }
}
