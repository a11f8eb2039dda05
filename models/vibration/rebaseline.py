#!/usr/bin/env python3
"""Replaces the drift baseline in the bundled packages with one of a healthy fleet in normal operation.

The first baseline (train.py) described the training set: a mixture of normal, imbalance and bearing-fault
recordings. Against it a healthy machine looked drifted (half the spread, PSI 0.8): faults are the
classifier's job, drift monitoring asks whether a machine still looks like the machines the model was made
for. So the reference data here is what a healthy fleet measures: 16 simulated machines (seeds 101-116,
20 s at 1 kHz each, recorded with `edgeml-agent record`), and the outputs are the model's own on those
recordings (`edgeml-agent run` on a replay). model.onnx is untouched; only manifest.json changes.

usage: /usr/bin/python3 models/vibration/rebaseline.py --agent artifacts/publish/linux-x64/edgeml-agent
"""
import argparse, json, os, subprocess, tempfile, zipfile
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = ["normal", "imbalance", "bearing_fault"]
QUANTILES = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99]
SEEDS = range(101, 117)
SAMPLES = 20000


# Class probabilities pile up near 0 and 1: deciles of such a distribution are a hair apart and any other
# machine's confidence falls outside them. Fixed edges, fine at both ends, serve every class alike.
PROBABILITY_EDGES = [0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.000001]


def feature_baseline(name, values, edges=None):
    """Moments, quantiles and a histogram whose edges are the reference deciles (min..max) or given, plus two overflow bins."""
    v = np.asarray(values, dtype=np.float64)
    edges = np.unique(np.quantile(v, np.linspace(0, 1, 11))) if edges is None else np.asarray(edges)
    counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
    return {"name": name, "count": int(len(v)), "mean": float(v.mean()), "variance": float(v.var(ddof=1)),
            "min": float(v.min()), "max": float(v.max()), "edges": edges.tolist(), "counts": counts.tolist(),
            "quantileProbabilities": QUANTILES, "quantiles": np.quantile(v, QUANTILES).tolist()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    args = ap.parse_args()
    package = os.path.join(HERE, "vibration-fault-int8.edgepkg")
    with tempfile.TemporaryDirectory() as tmp:
        channels, probs = [[], [], []], []
        for seed in SEEDS:
            path = os.path.join(tmp, f"normal-{seed}.csv")
            subprocess.run([args.agent, "record", "--sensor", "sim:vibration", "--samples", str(SAMPLES), "--seed", str(seed), "--out", path], check=True)
            data = np.loadtxt(path, delimiter=",", skiprows=1)
            for c in range(3):
                channels[c].extend(data[:, c])
            out = subprocess.run([args.agent, "run", "--model", package, "--sensor", f"replay:{path}", "--fast", "--quiet"],
                                 check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                p = json.loads(line)["probs"]
                probs.append([p[c] for c in CLASSES])
        probs = np.array(probs)
        features = [feature_baseline(ch, channels[c]) for c, ch in enumerate(["ax", "ay", "az"])]
        outputs = [feature_baseline(f"p_{cls}", probs[:, k], PROBABILITY_EDGES) for k, cls in enumerate(CLASSES)]
        labels = probs.argmax(1)
        outputs.append({"name": "label", "count": int(len(labels)), "mean": 0, "variance": 0, "min": 0, "max": 0, "edges": [], "counts": [],
                        "quantileProbabilities": [], "quantiles": [],
                        "categories": {cls: int((labels == k).sum()) for k, cls in enumerate(CLASSES)}})
        # Healthy machines differ from one another by up to about 0.25 σ in normed Wasserstein distance (seen here on
        # seeds outside the reference set), so this model tolerates 0.3 before it calls a machine drifted; a loose
        # mount or an offset is several σ. The other thresholds stay at the defaults.
        thresholds = {"psiModerate": 0.1, "psiMajor": 0.25, "jensenShannon": 0.1, "wassersteinNormed": 0.3, "ksAlpha": 0.05, "driftingShare": 0.5}
        baseline = {"samples": len(channels[0]), "features": features, "outputs": outputs, "thresholds": thresholds,
                    "reference": f"healthy fleet: {len(SEEDS)} simulated machines (seeds {SEEDS.start}-{SEEDS.stop - 1}), {SAMPLES} samples each"}

    for kind in ["fp32", "int8"]:
        path = os.path.join(HERE, f"vibration-fault-{kind}.edgepkg")
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("manifest.json"))
            model = z.read("model.onnx")
        manifest["baseline"] = baseline
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in [("manifest.json", json.dumps(manifest, indent=2).encode()), ("model.onnx", model)]:
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, data)
        print("rewrote", path, "baseline:", ", ".join(f"{f['name']} sd {f['variance'] ** 0.5:.3f}" for f in features))


if __name__ == "__main__":
    main()
