#!/usr/bin/env python3
"""Trains the bundled vibration fault classifier and writes the fp32 and int8 ONNX models.

Data comes from the agent's own simulator (`edgeml-agent record --sensor sim:vibration,...`), so the
model is trained on exactly the signal the agent produces at run time. Every segment is fixed by its
seed and parameters below: running this again gives the same data. Needs Debian's python3-torch,
python3-onnx and python3-numpy; nothing else in the project needs Python.

    ./build.sh                       # builds the agent this script calls
    /usr/bin/python3 models/vibration/train.py --agent "dotnet agent/EdgeMl.Agent/bin/Debug/net10.0/edgeml-agent.dll"
"""
import argparse, csv, json, os, shlex, subprocess, sys, tempfile
import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = ["normal", "imbalance", "bearing_fault"]
FAULT_OF = {"normal": "none", "imbalance": "imbalance", "bearing_fault": "bearing"}
WINDOW, HOP, RATE = 256, 128, 1000.0
SEGMENT_SAMPLES = 4096


def segments(split):
    """(class, sensor spec, seed) for every recorded segment of a split. Seeds never overlap between splits."""
    rng = np.random.default_rng({"train": 1, "val": 2, "test": 3}[split])
    per_class = {"train": 48, "val": 8, "test": 8}[split]
    base = {"train": 10_000, "val": 20_000, "test": 30_000}[split]
    out = []
    for ci, cls in enumerate(CLASSES):
        for k in range(per_class):
            shaft = rng.uniform(18, 32)
            noise = rng.uniform(0.1, 0.5)
            severity = rng.uniform(0.12, 1.2)
            spec = f"sim:vibration,fault={FAULT_OF[cls]},shaft-hz={shaft:.3f},noise={noise:.3f},severity={severity:.3f}"
            out.append((cls, spec, base + ci * 1000 + k))
    return out


def record(agent, spec, seed, samples, path):
    cmd = shlex.split(agent) + ["record", "--sensor", spec, "--seed", str(seed), "--samples", str(samples), "--out", path]
    subprocess.run(cmd, check=True)


def load_csv(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ax", "ay", "az"], rows[0]
    return np.asarray(rows[1:], dtype=np.float32)


def windows(samples):
    n = (len(samples) - WINDOW) // HOP + 1
    return np.stack([samples[i * HOP:i * HOP + WINDOW].T for i in range(n)])  # [N, C, T]


def dataset(agent, split, keep_dir=None):
    xs, ys = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for cls, spec, seed in segments(split):
            path = os.path.join(keep_dir or tmp, f"{cls}-{seed}.csv")
            samples = SEGMENT_SAMPLES if split != "test" else 2048
            record(agent, spec, seed, samples, path)
            w = windows(load_csv(path))
            xs.append(w)
            ys.append(np.full(len(w), CLASSES.index(cls), dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


QUANTILES = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99]


def feature_baseline(name, values):
    """Moments, quantiles and a histogram whose edges are the reference deciles (min..max), plus two overflow bins."""
    v = values.astype(np.float64)
    edges = np.unique(np.quantile(v, np.linspace(0, 1, 11)))
    counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
    return {"name": name, "count": int(len(v)), "mean": float(v.mean()), "variance": float(v.var(ddof=1)),
            "min": float(v.min()), "max": float(v.max()), "edges": edges.tolist(), "counts": counts.tolist(),
            "quantileProbabilities": QUANTILES, "quantiles": np.quantile(v, QUANTILES).tolist()}


class VibrationNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(3, 16, 9, stride=2, padding=4), nn.ReLU(),
            nn.Conv1d(16, 32, 7, stride=2, padding=3), nn.ReLU(),
            nn.Conv1d(32, 32, 5, stride=2, padding=2), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(32, len(CLASSES))

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True, help="command that runs edgeml-agent")
    ap.add_argument("--epochs", type=int, default=25)
    args = ap.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)

    test_dir = os.path.join(HERE, "test")
    os.makedirs(test_dir, exist_ok=True)
    xtr, ytr = dataset(args.agent, "train")
    xva, yva = dataset(args.agent, "val")
    xte, yte = dataset(args.agent, "test", keep_dir=test_dir)
    print(f"windows: train {len(xtr)}, val {len(xva)}, test {len(xte)}")

    mean = xtr.mean(axis=(0, 2))
    std = xtr.std(axis=(0, 2))
    norm = lambda x: (x - mean[None, :, None]) / std[None, :, None]

    model = VibrationNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    best, best_state = -1.0, None
    xt, yt = torch.from_numpy(norm(xtr)), torch.from_numpy(ytr)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(torch.from_numpy(norm(xva))).argmax(1).numpy() == yva).mean()
        sched.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f} val accuracy {acc:.4f}")
        if acc >= best:
            best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}

    model.load_state_dict(best_state)
    print(f"best val accuracy {best:.4f}")

    model.eval()
    with torch.no_grad():
        test_acc = (model(torch.from_numpy(norm(xte))).argmax(1).numpy() == yte).mean()
    print(f"fp32 test accuracy (torch): {test_acc:.4f}")

    work = os.path.join(HERE, "work")
    os.makedirs(work, exist_ok=True)
    fp32 = os.path.join(work, "model.fp32.onnx")
    torch.onnx.export(model, torch.zeros(1, 3, WINDOW), fp32, input_names=["accel"], output_names=["logits"], opset_version=13)

    # Calibration for int8: activation ranges on training windows, via forward hooks.
    calib = torch.from_numpy(norm(xtr[np.random.default_rng(5).choice(len(xtr), 512, replace=False)]))
    ranges = {}
    def hook(name):
        def f(_m, _i, out):
            lo, hi = float(out.min()), float(out.max())
            old = ranges.get(name, (lo, hi))
            ranges[name] = (min(lo, old[0]), max(hi, old[1]))
        return f
    for name, m in [("relu0", model.features[1]), ("relu1", model.features[3]), ("relu2", model.features[5]), ("pool", model.pool)]:
        m.register_forward_hook(hook(name))
    with torch.no_grad():
        model(calib)
    ranges["input"] = (float(calib.min()), float(calib.max()))

    # Drift baseline on the training data: raw channel values (what the sensor gives) and the model's outputs.
    with torch.no_grad():
        probs = torch.softmax(model(xt), 1).numpy()
    features = [feature_baseline(ch, xtr[:, c, :].ravel()) for c, ch in enumerate(["ax", "ay", "az"])]
    outputs = [feature_baseline(f"p_{cls}", probs[:, k]) for k, cls in enumerate(CLASSES)]
    labels = probs.argmax(1)
    outputs.append({"name": "label", "count": int(len(labels)), "mean": 0, "variance": 0, "min": 0, "max": 0, "edges": [], "counts": [],
                    "quantileProbabilities": [], "quantiles": [],
                    "categories": {cls: int((labels == k).sum()) for k, cls in enumerate(CLASSES)}})
    with open(os.path.join(work, "training.json"), "w") as f:
        json.dump({"mean": mean.tolist(), "std": std.tolist(), "ranges": ranges, "fp32_test_accuracy_torch": float(test_acc),
                   "windows": {"train": len(xtr), "val": len(xva), "test": len(xte)},
                   "baseline": {"samples": int(xtr.shape[0] * xtr.shape[2]), "features": features, "outputs": outputs}}, f, indent=2)
    print("wrote", fp32, "and work/training.json; next: quantize_qdq.py")


if __name__ == "__main__":
    main()
