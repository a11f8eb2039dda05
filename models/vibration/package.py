#!/usr/bin/env python3
"""Writes vibration-fault-fp32.edgepkg and vibration-fault-int8.edgepkg from work/ (train.py, quantize_qdq.py).

The package layout is the one in protocol/EdgeMl.Protocol/Packages/ModelPackage.cs: a zip with
manifest.json (model SHA-256 and size filled in) and model.onnx. Once `edgeml model package` exists
(model-toolchain issue) it replaces this script.
"""
import hashlib, json, os, zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "work")
CLASSES = ["normal", "imbalance", "bearing_fault"]


def manifest(model_bytes, info, quantized):
    m = {
        "schemaVersion": 1,
        "name": "vibration-fault",
        "version": "1.0.0",
        "description": "Fault classifier for a rotating machine's 3-axis accelerometer: normal, imbalance, bearing fault (outer race). 256-sample windows at 1 kHz.",
        "model": {"file": "model.onnx", "sha256": hashlib.sha256(model_bytes).hexdigest(), "sizeBytes": len(model_bytes)},
        "inputs": [{
            "name": "accel", "type": "float32", "shape": [1, 3, 256],
            "source": {"channels": ["ax", "ay", "az"], "window": 256, "hop": 128, "sampleRateHz": 1000, "layout": "channels_first"},
            "normalization": {"mean": info["mean"], "std": info["std"]},
        }],
        "outputs": [{"name": "logits", "type": "float32", "shape": [1, 3], "kind": "classification", "labels": CLASSES, "softmax": True}],
        "execution": {"preferredProvider": "cpu", "intraOpThreads": 1},
        "baseline": info["baseline"],
    }
    if quantized:
        fp32 = open(os.path.join(WORK, "model.fp32.onnx"), "rb").read()
        m["quantization"] = {"format": "qdq", "weights": "int8", "activations": "uint8", "perChannel": True,
                             "calibration": "minmax, 512 training windows", "tool": "models/vibration/quantize_qdq.py",
                             "referenceModelSha256": hashlib.sha256(fp32).hexdigest()}
    return m


def write(path, model_bytes, m):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in [("manifest.json", json.dumps(m, indent=2).encode()), ("model.onnx", model_bytes)]:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    print("wrote", path, os.path.getsize(path), "bytes")


def main():
    info = json.load(open(os.path.join(WORK, "training.json")))
    for kind in ["fp32", "int8"]:
        model_bytes = open(os.path.join(WORK, f"model.{kind}.onnx"), "rb").read()
        write(os.path.join(HERE, f"vibration-fault-{kind}.edgepkg"), model_bytes, manifest(model_bytes, info, kind == "int8"))


if __name__ == "__main__":
    main()
