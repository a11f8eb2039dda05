#!/usr/bin/env python3
"""Static int8 QDQ quantization of the bundled vibration model (an interim tool, see MODEL_CARD.md).

The project's own quantizer (`edgeml model quantize`, the model-toolchain issue) does not exist yet, and
ONNX Runtime's Python quantization tools are not available here, so this script writes the QDQ graph
the way ONNX Runtime's quantizer lays it out, for this model's shape (Conv-ReLU x3, pool, Gemm):
  - weights: symmetric int8, per output channel for Conv, per tensor for Gemm; biases int32 at
    scale = input scale x weight scale;
  - activations: uint8 (fast on x86 without VNNI), asymmetric for the input, zero point 0 after each
    ReLU. The ReLU itself is dropped because a uint8 Q with zero point 0 clamps at zero, exactly as
    ONNX Runtime's quantizer removes it — then Q→Conv→Q groups fuse into QLinearConv;
  - ranges: min/max over 512 calibration windows, measured in train.py.
"""
import json, os
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "work")


def uint8_params(lo, hi):
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zp = int(round(-lo / scale))
    return np.float32(scale), np.uint8(min(max(zp, 0), 255))


def main():
    model = onnx.load(os.path.join(WORK, "model.fp32.onnx"))
    info = json.load(open(os.path.join(WORK, "training.json")))
    ranges = info["ranges"]
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    nodes = list(g.node)
    ops = [n.op_type for n in nodes]
    assert ops[:6] == ["Conv", "Relu"] * 3, ops

    new_nodes, new_inits = [], []
    def const(name, arr):
        new_inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def qdq(tensor, rng_name, tag):
        s, z = uint8_params(*ranges[rng_name])
        sn, zn = const(f"{tag}_scale", s), const(f"{tag}_zp", z)
        new_nodes.append(helper.make_node("QuantizeLinear", [tensor, sn, zn], [f"{tag}_q"], name=f"{tag}_Q"))
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{tag}_q", sn, zn], [f"{tag}_dq"], name=f"{tag}_DQ"))
        return f"{tag}_dq", float(s)

    def weight(name, axis, per_channel):
        w = inits[name].astype(np.float32)
        if per_channel:
            m = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        else:
            m = np.array(np.abs(w).max())
        s = (np.maximum(m, 1e-8) / 127.0).astype(np.float32)
        shape = (-1,) + (1,) * (w.ndim - 1) if per_channel else ()
        q = np.clip(np.round(w / s.reshape(shape)), -127, 127).astype(np.int8)
        qn, sn, zn = const(f"{name}_q", q), const(f"{name}_scale", s), const(f"{name}_zp", np.zeros_like(s, dtype=np.int8))
        attrs = {"axis": axis} if per_channel else {}
        new_nodes.append(helper.make_node("DequantizeLinear", [qn, sn, zn], [f"{name}_dq"], name=f"{name}_DQ", **attrs))
        return f"{name}_dq", s

    def bias(name, in_scale, w_scale):
        b = inits[name].astype(np.float32)
        s = (in_scale * np.broadcast_to(w_scale, b.shape)).astype(np.float32)
        q = np.round(b / s).astype(np.int32)
        qn, sn, zn = const(f"{name}_q", q), const(f"{name}_scale", s), const(f"{name}_zp", np.zeros_like(q))
        new_nodes.append(helper.make_node("DequantizeLinear", [qn, sn, zn], [f"{name}_dq"], name=f"{name}_DQ", axis=0))
        return f"{name}_dq"

    x, s_in = qdq(g.input[0].name, "input", "input")
    for i in range(3):
        conv, relu = nodes[2 * i], nodes[2 * i + 1]
        wname, bname = conv.input[1], conv.input[2]
        wdq, ws = weight(wname, 0, per_channel=True)
        bdq = bias(bname, s_in, ws)
        out = f"conv{i}_out"
        new_nodes.append(helper.make_node("Conv", [x, wdq, bdq], [out], name=f"conv{i}", **{a.name: helper.get_attribute_value(a) for a in conv.attribute}))
        x, s_in = qdq(out, f"relu{i}", f"relu{i}")  # zero point 0: the Q clamps negatives, i.e. the ReLU

    rest = nodes[6:]
    for n in rest:
        inputs = [x if k == 0 else v for k, v in enumerate(n.input)]
        if n.op_type == "GlobalAveragePool":
            new_nodes.append(helper.make_node(n.op_type, inputs, ["pool_out"], name="pool"))
            x, s_in = qdq("pool_out", "pool", "pool")
        elif n.op_type == "Gemm":
            wdq, ws = weight(n.input[1], 0, per_channel=False)
            bdq = bias(n.input[2], s_in, ws)
            new_nodes.append(helper.make_node("Gemm", [x, wdq, bdq], list(n.output), name="head", **{a.name: helper.get_attribute_value(a) for a in n.attribute}))
            x = n.output[0]
        else:
            out = [o for o in n.output]
            new_nodes.append(helper.make_node(n.op_type, inputs, out, name=n.name or n.op_type))
            x = out[0]

    graph = helper.make_graph(new_nodes, g.name, list(g.input), list(g.output), new_inits)
    q = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edgeml-models/quantize_qdq.py")
    q.ir_version = model.ir_version
    onnx.checker.check_model(q)
    onnx.save(q, os.path.join(WORK, "model.int8.onnx"))
    print("wrote work/model.int8.onnx", os.path.getsize(os.path.join(WORK, "model.int8.onnx")), "bytes; fp32",
          os.path.getsize(os.path.join(WORK, "model.fp32.onnx")), "bytes")


if __name__ == "__main__":
    main()
