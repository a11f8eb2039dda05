using System.Net;
using System.Net.Sockets;

namespace EdgeMl.FleetSim;

public static class Loopback
{
    private static readonly HashSet<int> Given = [];

    /// <summary>
    /// A TCP port on 127.0.0.1 free at this moment (for a hub, a broker or a relay started next). Chosen below
    /// Linux's ephemeral range (32768+): a port-0 pick comes from that range, where any outgoing connection
    /// (an agent's, a test client's) can take it before the server binds it — seen as a hub that never started.
    /// </summary>
    public static int FreePort()
    {
        for (var attempt = 0; attempt < 200; attempt++)
        {
            var port = Random.Shared.Next(20_000, 32_000);
            // A port handed out once in this process is not handed out again: two callers (tests running in parallel)
            // that each got a free port before either bound it would otherwise collide.
            lock (Given)
            {
                if (!Given.Add(port)) continue;
            }

            try
            {
                var l = new TcpListener(IPAddress.Loopback, port);
                l.Start();
                l.Stop();
                return port;
            }
            catch (SocketException)
            {
                // Taken: try another.
            }
        }

        var any = new TcpListener(IPAddress.Loopback, 0);
        any.Start();
        var fallback = ((IPEndPoint)any.LocalEndpoint).Port;
        any.Stop();
        return fallback;
    }
}
