#!/usr/bin/env python3
"""Records the calibration set for `edgeml model quantize`: 4 training segments per class (train split seeds,
never the test ones), 2,048 samples each, as CSV in calibration/ (the replay format: ax,ay,az)."""
import argparse, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import segments, record

ap = argparse.ArgumentParser()
ap.add_argument("--agent", required=True, help="command that runs edgeml-agent")
args = ap.parse_args()
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calibration")
os.makedirs(out, exist_ok=True)
taken = {}
for cls, spec, seed in segments("train"):
    if taken.get(cls, 0) >= 4:
        continue
    taken[cls] = taken.get(cls, 0) + 1
    record(args.agent, spec, seed, 2048, os.path.join(out, f"{cls}-{seed}.csv"))
print(f"{sum(taken.values())} segments in {out}")
