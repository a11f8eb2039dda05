using System.Net;
using System.Net.Sockets;

namespace EdgeMl.FleetSim;

/// <summary>
/// A loopback TCP relay between a device and its broker that can cut the network (tests and the fleet demo): <see cref="Cut"/> drops
/// every open connection and refuses new ones until <see cref="Restore"/>. Other clients keep talking to
/// the broker directly, so they see what the device delivered across the cut.
/// </summary>
public sealed class TcpCutProxy : IDisposable
{
    private readonly int _target;
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly List<TcpClient> _open = [];
    private volatile bool _cut;

    public TcpCutProxy(int targetPort, bool startCut = false)
    {
        _target = targetPort;
        _cut = startCut;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _ = AcceptLoop();
    }

    public int Port { get; }
    public string Url => $"mqtt://127.0.0.1:{Port}";
    public int Connections { get; private set; }

    public void Cut()
    {
        _cut = true;
        lock (_gate)
        {
            foreach (var c in _open) c.Dispose();
            _open.Clear();
        }
    }

    public void Restore() => _cut = false;

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient device;
            try
            {
                device = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            if (_cut)
            {
                device.Dispose();
                continue;
            }

            var broker = new TcpClient();
            try
            {
                await broker.ConnectAsync(IPAddress.Loopback, _target);
            }
            catch (SocketException)
            {
                device.Dispose();
                broker.Dispose();
                continue;
            }

            Connections++;
            lock (_gate)
            {
                _open.Add(device);
                _open.Add(broker);
            }

            _ = Pump(device, broker);
            _ = Pump(broker, device);
        }
    }

    private static async Task Pump(TcpClient from, TcpClient to)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            var src = from.GetStream();
            var dst = to.GetStream();
            int n;
            while ((n = await src.ReadAsync(buffer)) > 0)
            {
                await dst.WriteAsync(buffer.AsMemory(0, n));
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException or InvalidOperationException)
        {
        }
        finally
        {
            from.Dispose();
            to.Dispose();
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        Cut();
        _stop.Dispose();
    }
}
