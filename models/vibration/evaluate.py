#!/usr/bin/env python3
"""Accuracy of the fp32 and int8 packages on the held-out test recordings (test/CLASS-SEED.csv),
run through the real agent (replay sensor → window → ONNX Runtime), and their top-1 agreement.

    /usr/bin/python3 models/vibration/evaluate.py --agent "dotnet agent/EdgeMl.Agent/bin/Debug/net10.0/edgeml-agent.dll"
"""
import argparse, glob, json, os, shlex, subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def predict(agent, package, csv):
    cmd = shlex.split(agent) + ["run", "--model", package, "--sensor", f"replay:{csv}", "--fast", "--quiet"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line)["label"] for line in out.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(HERE, "test", "*.csv")))
    truth, preds = [], {"fp32": [], "int8": []}
    for f in files:
        cls = os.path.basename(f).rsplit("-", 1)[0]
        for kind in preds:
            p = predict(args.agent, os.path.join(HERE, f"vibration-fault-{kind}.edgepkg"), f)
            preds[kind].extend(p)
        truth.extend([cls] * len(p))
    for kind, p in preds.items():
        acc = sum(a == b for a, b in zip(p, truth)) / len(truth)
        print(f"{kind}: accuracy {acc:.4f} on {len(truth)} windows")
    agree = sum(a == b for a, b in zip(preds["fp32"], preds["int8"])) / len(truth)
    print(f"int8 vs fp32 top-1 agreement {agree:.4f}")


if __name__ == "__main__":
    main()
