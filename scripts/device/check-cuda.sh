#!/usr/bin/env bash
# On the device machine: the test models on CUDA against the CPU path of the same binary.
# For every model assembled under /tmp/hearth/models (see stage.sh): greedy tokens side by side
# (`hearth bench devices`), then engine speed on the GPU (`hearth bench engine --device cuda`).
# Also runs the GPU kernel tests when their binary was carried (.device/cuda_kernels.xz, from
# `scripts/build-cuda.sh --tests`), and a `hearth serve --device cuda` smoke test on the first model.
# usage (from the repo root there): bash scripts/device/check-cuda.sh [MODEL_NAME_GLOB]
set -uo pipefail
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
H=/tmp/hearth/hearth
OUT=${OUT:-/tmp/hearth/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu --format=csv
if [ -f .device/cuda_kernels.xz ]; then
  xz -dc .device/cuda_kernels.xz > /tmp/hearth/cuda_kernels && chmod +x /tmp/hearth/cuda_kernels
  echo "=== GPU kernel tests"
  /tmp/hearth/cuda_kernels --test-threads 1 2>&1 | tee "$OUT/kernel-tests.txt" | grep -E "^test |test result"
fi
first=$(ls /tmp/hearth/models/${1:-*} 2>/dev/null | head -1)
if [ -n "$first" ]; then
  echo "=== hearth serve --device cuda ($first)"
  "$H" serve --device cuda --model "m=$first" --port 18337 > "$OUT/serve.txt" 2>&1 &
  pid=$!
  for _ in $(seq 60); do curl -sf localhost:18337/health >/dev/null && break; sleep 1; done
  curl -s localhost:18337/v1/chat/completions -H 'content-type: application/json' \
    -d '{"model":"m","messages":[{"role":"user","content":"Name three colours."}],"max_tokens":24,"temperature":0}' | head -c 600; echo
  for i in 1 2 3 4 5 6 7 8; do
    curl -s localhost:18337/v1/completions -H 'content-type: application/json' -d "{\"model\":\"m\",\"prompt\":\"Story $i:\",\"max_tokens\":32}" > /dev/null &
  done; wait $(jobs -p | grep -v "^$pid$") 2>/dev/null
  curl -s localhost:18337/api/ps; echo
  curl -s localhost:18337/metrics | grep -E "^hearth.(generation_tokens_total|num_requests_running)" | head -4
  kill $pid; wait $pid 2>/dev/null
fi
for m in /tmp/hearth/models/${1:-*}; do
  [ -f "$m" ] || continue
  name=$(basename "$m")
  echo "=== $name: greedy, cpu vs cuda"
  "$H" bench devices "$m" --device cuda --tokens 32 2>&1 | tee "$OUT/devices-$name.txt" | tail -4
  echo "=== $name: engine speed on cuda, decode graphs off, then on"
  HEARTH_CUDA_GRAPHS=0 "$H" bench engine "$m" --device cuda --reps 3 2>&1 | tee "$OUT/engine-nograph-$name.txt"
  "$H" bench engine "$m" --device cuda --reps 3 2>&1 | tee "$OUT/engine-$name.txt"
done
