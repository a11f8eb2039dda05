#!/usr/bin/env bash
# Re-makes vibration-fault-int8.edgepkg with the project's own toolchain (edgeml model quantize / package /
# evaluate), from the fp32 package, the calibration recordings in calibration/ (training segments, see
# make_calibration.py) and a healthy-fleet reference for the drift baseline (16 simulated machines, seeds
# 101–116, 20,000 samples each — recorded here, not committed). Prints the evaluation MODEL_CARD.md quotes.
#
# usage: ./build.sh && models/vibration/remake_int8.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
EDGEML=(dotnet "$ROOT/fleet-hub/EdgeMl.Cli/bin/Debug/net10.0/edgeml.dll")
AGENT=(dotnet "$ROOT/agent/EdgeMl.Agent/bin/Debug/net10.0/edgeml-agent.dll")
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/reference"
for seed in $(seq 101 116); do
  "${AGENT[@]}" record --sensor sim:vibration --samples 20000 --seed "$seed" --out "$work/reference/normal-$seed.csv" >/dev/null
done
"${EDGEML[@]}" model quantize "$HERE/vibration-fault-fp32.edgepkg" --calibration "$HERE/calibration" --out "$work/model.int8.onnx"
"${EDGEML[@]}" model package --model "$work/model.int8.onnx" --manifest "$HERE/vibration-fault-int8.edgepkg" \
  --reference "$work/reference" --out "$HERE/vibration-fault-int8.edgepkg"
"${EDGEML[@]}" model evaluate --reference "$HERE/vibration-fault-fp32.edgepkg" --candidate "$HERE/vibration-fault-int8.edgepkg" \
  --data "$HERE/test" --repeats 5
