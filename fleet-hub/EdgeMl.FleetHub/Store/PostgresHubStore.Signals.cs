using Npgsql;

namespace EdgeMl.FleetHub.Store;

/// <summary>
/// Signals between replicas for work one replica leads (<see cref="IHubStore.Signal"/>): PostgreSQL <c>NOTIFY</c> on a
/// channel per kind of work, heard by a <c>LISTEN</c>ing connection of each replica (not pooled, on a thread of its own).
/// </summary>
public sealed partial class PostgresHubStore
{
    /// <summary>At most this many items wait per kind of work; beyond it the items are dropped and the batch says <c>Lost</c> (the reader sweeps).</summary>
    private const int MaxSignalled = 100_000;

    /// <summary>A NOTIFY payload must stay under 8000 bytes.</summary>
    private const int MaxNotifyBytes = 7000;

    private readonly Lock _signalGate = new();
    private readonly Dictionary<string, SignalBox> _signals = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _closing = new();

    private sealed class SignalBox
    {
        public HashSet<string> Items { get; } = new(StringComparer.Ordinal);
        public bool Lost { get; set; } = true; // nothing heard before the first LISTEN
    }

    private static string Channel(string work) => "edgeml_" + new string(work.Select(ch => char.IsAsciiLetterOrDigit(ch) ? ch : '_').ToArray());

    /// <summary><c>pg_notify</c> on the work's channel, the items joined by line breaks in payloads under 8000 bytes.</summary>
    public void Signal(string work, IReadOnlyCollection<string> items)
    {
        if (items.Count == 0) return;
        var payloads = new List<string>();
        var current = new System.Text.StringBuilder();
        foreach (var item in items)
        {
            if (current.Length > 0 && current.Length + item.Length + 1 > MaxNotifyBytes)
            {
                payloads.Add(current.ToString());
                current.Clear();
            }

            if (current.Length > 0) current.Append('\n');
            current.Append(item);
        }

        payloads.Add(current.ToString());
        Run(c =>
        {
            foreach (var p in payloads) Exec(c, null, "SELECT pg_notify($1, $2)", Channel(work), p);
            return 0;
        });
    }

    /// <summary>What this replica's listener heard on the work's channel since the last call; starts the listener on the first call.</summary>
    public SignalBatch TakeSignals(string work)
    {
        lock (_signalGate)
        {
            if (!_signals.TryGetValue(work, out var box))
            {
                box = new SignalBox();
                _signals[work] = box;
                new Thread(() => Listen(work, box)) { IsBackground = true, Name = $"edgeml-listen-{work}" }.Start();
            }

            var batch = new SignalBatch([.. box.Items], box.Lost);
            box.Items.Clear();
            box.Lost = false;
            return batch;
        }
    }

    /// <summary>
    /// LISTENs on the work's channel until the store is disposed; a broken connection is opened again after a second.
    /// Every (re)start of the LISTEN marks the box <c>Lost</c>: what was sent while no one listened here is not known.
    /// </summary>
    private void Listen(string work, SignalBox box)
    {
        while (!_closing.IsCancellationRequested)
        {
            try
            {
                using var c = new NpgsqlConnection(_leaseConnectionString);
                c.Open();
                c.Notification += (_, e) =>
                {
                    lock (_signalGate)
                    {
                        foreach (var item in e.Payload.Split('\n', StringSplitOptions.RemoveEmptyEntries)) box.Items.Add(item);
                        if (box.Items.Count <= MaxSignalled) return;
                        box.Items.Clear();
                        box.Lost = true;
                    }
                };
                Exec(c, null, $"LISTEN {Channel(work)}");
                lock (_signalGate) box.Lost = true;
                while (!_closing.IsCancellationRequested) c.Wait(1000);
            }
            catch (Exception e) when (e is NpgsqlException or IOException or InvalidOperationException or TimeoutException or System.Net.Sockets.SocketException)
            {
                lock (_signalGate) box.Lost = true;
                _closing.Token.WaitHandle.WaitOne(1000);
            }
        }
    }
}
