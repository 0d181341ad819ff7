#!/usr/bin/env bash
# On the device machine: the test models on CUDA against the CPU path of the same binary.
# For every model assembled under /tmp/hearth/models (see stage.sh): greedy tokens side by side
# (`hearth bench devices`), then engine speed on the GPU (`hearth bench engine --device cuda`).
# usage (from the repo root there): bash scripts/device/check-cuda.sh [MODEL_NAME_GLOB]
set -uo pipefail
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
H=/tmp/hearth/hearth
OUT=${OUT:-/tmp/hearth/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu --format=csv
for m in /tmp/hearth/models/${1:-*}; do
  [ -f "$m" ] || continue
  name=$(basename "$m")
  echo "=== $name: greedy, cpu vs cuda"
  "$H" bench devices "$m" --device cuda --tokens 32 2>&1 | tee "$OUT/devices-$name.txt" | tail -4
  echo "=== $name: engine speed on cuda"
  "$H" bench engine "$m" --device cuda --reps 3 2>&1 | tee "$OUT/engine-$name.txt"
done
