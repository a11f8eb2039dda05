using Onnx;

namespace EdgeMl.ModelTools;

/// <summary>
/// Rewrites that bring a graph as exporters write it into the form the quantizer works on, in every graph and
/// subgraph: unnamed nodes get names, <c>Constant</c> nodes become initializers (as onnx-simplifier does), float16
/// weights read only through <c>Cast(to=float)</c> become float32 initializers, and nodes are put in topological order.
/// </summary>
public static class GraphRewrites
{
    /// <summary>All of them, in the order they must run.</summary>
    public static void Prepare(OnnxGraph g, List<string> notes)
    {
        NameNodes(g);
        var folded = FoldConstants(g);
        if (folded > 0) notes.Add($"{folded} Constant node(s) folded into initializers");
        var widened = WidenFloat16Weights(g);
        if (widened > 0) notes.Add($"{widened} float16 weight(s) read through Cast(to=float) stored as float32 (quantized from there)");
        RefuseFloat16Computation(g);
        SortAll(g);
    }

    /// <summary>Nodes without a name get <c>OpType_index</c> (unique in the model), so that they can be reported and excluded.</summary>
    public static void NameNodes(OnnxGraph g)
    {
        var names = g.Nodes().Select(n => n.Name).Where(n => n.Length > 0).ToHashSet(StringComparer.Ordinal);
        var k = 0;
        foreach (var n in g.Nodes().Where(n => n.Name.Length == 0))
        {
            string name;
            do name = $"{n.OpType}_{k++}";
            while (!names.Add(name));
            n.Name = name;
        }
    }

    /// <summary><c>Constant</c> nodes (tensor, float, floats, int, ints values) become initializers of their graph.</summary>
    public static int FoldConstants(OnnxGraph g)
    {
        var folded = 0;
        foreach (var graph in g.Graphs().ToList())
        {
            foreach (var n in graph.Node.Where(n => n.OpType == "Constant" && n.Domain is "" or "ai.onnx" && n.Attribute.Count == 1).ToList())
            {
                var a = n.Attribute[0];
                var name = n.Output[0];
                TensorProto? t = a.Name switch
                {
                    "value" when a.T is not null => a.T.Clone(),
                    "value_float" => OnnxGraph.FloatTensor(name, [a.F]),
                    "value_floats" => OnnxGraph.FloatTensor(name, [.. a.Floats], a.Floats.Count),
                    "value_int" => OnnxGraph.Int64Tensor(name, [a.I]),
                    "value_ints" => OnnxGraph.Int64Tensor(name, [.. a.Ints], a.Ints.Count),
                    _ => null,
                };
                if (t is null) continue;
                t.Name = name;
                graph.Initializer.Add(t);
                graph.Node.Remove(n);
                folded++;
            }
        }

        return folded;
    }

    /// <summary>A float16 initializer read only by <c>Cast(to=float)</c> nodes becomes a float32 initializer named as the Cast's output.</summary>
    public static int WidenFloat16Weights(OnnxGraph g)
    {
        var widened = 0;
        foreach (var graph in g.Graphs().ToList())
        {
            var readers = graph.Node.SelectMany(n => n.Input.Select(i => (i, n))).ToLookup(x => x.i, x => x.n);
            var nested = g.Graphs().Where(x => !ReferenceEquals(x, graph)).SelectMany(x => x.Node).SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
            foreach (var t in graph.Initializer.Where(t => t.DataType == (int)TensorProto.Types.DataType.Float16).ToList())
            {
                var r = readers[t.Name].ToList();
                if (r.Count == 0 || nested.Contains(t.Name) || !r.All(IsCastToFloat)) continue;
                var values = OnnxGraph.Floats(t);
                foreach (var cast in r)
                {
                    graph.Initializer.Add(OnnxGraph.FloatTensor(cast.Output[0], values, [.. t.Dims]));
                    graph.Node.Remove(cast);
                }

                graph.Initializer.Remove(t);
                widened++;
            }
        }

        return widened;
    }

    private static bool IsCastToFloat(NodeProto n) => n.OpType == "Cast" && OnnxGraph.IntAttribute(n, "to", 0) == (int)TensorProto.Types.DataType.Float;

    /// <summary>A model that computes in float16 (float16 weights read by other ops than a Cast to float) is refused, saying so.</summary>
    public static void RefuseFloat16Computation(OnnxGraph g)
    {
        var fp16 = g.Graphs().SelectMany(x => x.Initializer).Where(t => t.DataType == (int)TensorProto.Types.DataType.Float16).Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var users = g.Nodes().Where(n => !IsCastToFloat(n) && n.Input.Any(fp16.Contains)).ToList();
        if (users.Count > 0)
        {
            throw new ModelToolException($"{g.Source}: the model computes in float16 ({users.Count} node(s) read float16 weights, e.g. {users[0].OpType} '{users[0].Name}'); only float32 models, or float16 weights read through Cast(to=float), are quantized here: convert it to float32 first");
        }
    }

    /// <summary>Every graph and subgraph in topological order (see <see cref="Sort"/>).</summary>
    public static void SortAll(OnnxGraph g)
    {
        foreach (var graph in g.Graphs().ToList()) Sort(graph, g.Source);
    }

    /// <summary>
    /// Puts the nodes of <paramref name="graph"/> in topological order, as ONNX requires, keeping the given order where
    /// it already is one. A node depends on the producers of its inputs and of the outer names its subgraphs read.
    /// </summary>
    /// <exception cref="ModelToolException">A cycle, or an input that nothing produces (names the node).</exception>
    public static void Sort(GraphProto graph, string source)
    {
        var nodes = graph.Node.ToList();
        var producer = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < nodes.Count; i++) foreach (var o in nodes[i].Output.Where(o => o.Length > 0)) producer[o] = i;
        var deps = nodes.Select(n => Reads(n).Where(producer.ContainsKey).Select(x => producer[x]).Distinct().ToList()).ToList();
        var dependents = nodes.Select(_ => new List<int>()).ToList();
        var waiting = new int[nodes.Count];
        for (var i = 0; i < nodes.Count; i++)
        {
            foreach (var d in deps[i])
            {
                if (d == i) throw new ModelToolException($"{source}: node '{nodes[i].Name}' reads its own output");
                dependents[d].Add(i);
                waiting[i]++;
            }
        }

        var ready = new PriorityQueue<int, int>();
        for (var i = 0; i < nodes.Count; i++) if (waiting[i] == 0) ready.Enqueue(i, i);
        var order = new List<NodeProto>(nodes.Count);
        while (ready.TryDequeue(out var i, out _))
        {
            order.Add(nodes[i]);
            foreach (var d in dependents[i]) if (--waiting[d] == 0) ready.Enqueue(d, d);
        }

        if (order.Count != nodes.Count)
        {
            var stuck = nodes.Where((_, i) => waiting[i] > 0).First();
            throw new ModelToolException($"{source}: graph '{graph.Name}' has a cycle through node '{stuck.Name}' ({stuck.OpType})");
        }

        if (order.SequenceEqual(nodes, ReferenceEqualityComparer.Instance)) return;
        graph.Node.Clear();
        graph.Node.AddRange(order);
    }

    /// <summary>The names a node reads: its inputs and, for If/Loop/Scan, the outer names its subgraphs use.</summary>
    public static IEnumerable<string> Reads(NodeProto n) => n.Input.Where(i => i.Length > 0).Concat(OnnxGraph.Subgraphs(n).SelectMany(OuterNames));

    /// <summary>Names a subgraph reads from the scopes around it (not its inputs, initializers or its own nodes' outputs).</summary>
    public static IEnumerable<string> OuterNames(GraphProto sub)
    {
        var local = sub.Input.Select(i => i.Name).Concat(sub.Initializer.Select(t => t.Name)).Concat(sub.Node.SelectMany(n => n.Output)).ToHashSet(StringComparer.Ordinal);
        return sub.Node.SelectMany(Reads).Where(x => !local.Contains(x)).Distinct();
    }

    /// <summary>Drops initializers that no node of any graph reads any more (and their graph-input entries, which older exporters write).</summary>
    public static void Prune(OnnxGraph g)
    {
        var used = g.Nodes().SelectMany(n => n.Input).Concat(g.Graphs().SelectMany(x => x.Output).Select(o => o.Name)).ToHashSet(StringComparer.Ordinal);
        foreach (var graph in g.Graphs().ToList())
        {
            var removed = graph.Initializer.Where(t => !used.Contains(t.Name)).ToList();
            foreach (var t in removed) graph.Initializer.Remove(t);
            var names = removed.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
            foreach (var i in graph.Input.Where(i => names.Contains(i.Name)).ToList()) graph.Input.Remove(i);
        }
    }
}
