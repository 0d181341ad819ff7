#!/usr/bin/env bash
# On the device machine: hearth on CUDA against llama.cpp (CUDA) on random-weight models at real shapes,
# with the memory-bandwidth roofline. Stages, each one call (the machine keeps /tmp only while warm):
#   bash scripts/device/bench-cuda.sh build          # stage hearth (.device/hearth.xz), run the GPU kernel
#                                                    #   tests if carried (.device/cuda_kernels.xz), start the
#                                                    #   llama.cpp build in the background (.device/llama-src.tar.gz)
#   bash scripts/device/bench-cuda.sh models SHAPE   # llama-1b | llama-8b: f16 GGUF, Q4_K_M, Q8_0, bf16 dir
#   bash scripts/device/bench-cuda.sh bench SHAPE    # every format of SHAPE: hearth, then llama.cpp
#   bash scripts/device/bench-cuda.sh roofline       # device bandwidth, bytes per step, the table
# Results go to $OUT (when set) and /tmp/bench; the last stage prints the table for docs/performance.md.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
H=/tmp/hearth/hearth
LL=/tmp/llama-build/bin
M=/tmp/bench/models
R=/tmp/bench/results
mkdir -p "$M" "$R"
save() { [ -n "${OUT:-}" ] && cp "$R"/* "$OUT"/ 2>/dev/null; true; }

case "${1:-}" in
build)
  bash "$HERE/stage.sh" >/dev/null
  "$H" --version
  if [ -f .device/cuda_kernels.xz ]; then
    xz -dc .device/cuda_kernels.xz > /tmp/hearth/cuda_kernels && chmod +x /tmp/hearth/cuda_kernels
    /tmp/hearth/cuda_kernels --test-threads 1 2>&1 | tee "$R/kernel-tests.txt" | grep -E "^test |test result"
  fi
  # In its own session, so it outlives this call; the marker file says it is still running.
  touch /tmp/llama-building
  setsid nohup bash -c "bash '$HERE/build-llama-cuda.sh' > /tmp/llama-build.log 2>&1; rm -f /tmp/llama-building" < /dev/null > /dev/null 2>&1 &
  ;;
models)
  shape=$2
  [ -f "$M/$shape-f16.gguf" ] || python3 "$HERE/gen-shaped-model.py" --shape "$shape" --format gguf-f16 --out "$M/$shape-f16.gguf"
  [ -d "$M/$shape-bf16" ] || python3 "$HERE/gen-shaped-model.py" --shape "$shape" --format safetensors-bf16 --out "$M/$shape-bf16"
  while [ -e /tmp/llama-building ]; do sleep 5; done  # llama-quantize makes the quantized files
  for q in ${QUANTS:-Q4_K_M Q8_0}; do
    [ -f "$M/$shape-$q.gguf" ] || "$LL/llama-quantize" "$M/$shape-f16.gguf" "$M/$shape-$q.gguf" "$q" 16 > /dev/null 2>&1
  done
  ls -la "$M"
  ;;
bench)
  shape=$2
  for f in ${FILES:-"$M/$shape-bf16" "$M/$shape-f16.gguf" "$M/$shape-Q4_K_M.gguf" "$M/$shape-Q8_0.gguf"}; do
    [ -e "$f" ] || continue
    n=$(basename "$f")
    echo "=== $n"
    "$H" bench engine "$f" --device cuda --reps 3 2>&1 | tee "$R/hearth-engine-$n.txt" | grep -E "hearth "
    # Every logit row copied to the host each step, as llama-batched-bench's decode calls do; then
    # only each row's pick, as the engine steps when its sequences sample greedily or from a top k.
    echo "--- hearth batched, logits copied"
    "$H" bench batched "$f" --device cuda --seqs 1,8,32,64 --pp 512 --tg 128 2>&1 | tee "$R/hearth-batched-$n.txt" | grep -E "^\| +[0-9]"
    echo "--- hearth batched, picks on the device"
    "$H" bench batched "$f" --device cuda --seqs 1,8,32,64 --pp 512 --tg 128 --greedy-on-device 2>&1 | tee "$R/hearth-batched-picks-$n.txt" | grep -E "^\| +[0-9]"
    echo "--- hearth batched, 256-entry top lists from the device (sampling with penalties)"
    "$H" bench batched "$f" --device cuda --seqs 1,8,32,64 --pp 512 --tg 128 --top-on-device 256 2>&1 | tee "$R/hearth-batched-top-$n.txt" | grep -E "^\| +[0-9]"
    case "$f" in *.gguf)
      "$LL/llama-bench" -m "$f" -p 512 -n 128 -r 3 -ngl 99 -fa 1 -o md 2>/dev/null | tee "$R/llama-bench-$n.txt" | grep -E "pp512|tg128"
      "$LL/llama-batched-bench" -m "$f" -c 41984 -b 2048 -ub 512 -npp 512 -ntg 128 -npl 1,8,32,64 -ngl 99 -fa 1 2>/dev/null \
        | tee "$R/llama-batched-$n.txt" | grep -E "^\| +512"
    esac
  done
  save
  ;;
roofline)
  bw=$(python3 - <<'PY'
import torch
n = 4 << 30
x = torch.empty(n, dtype=torch.uint8, device="cuda").random_(0, 255)
y = torch.empty_like(x)
for _ in range(3):
    y.copy_(x)
times = []
for _ in range(20):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record(); y.copy_(x); b.record(); b.synchronize()
    times.append(a.elapsed_time(b) / 1e3)
times.sort()
print(f"{2 * n / times[len(times) // 2] / 1e9:.0f}")
PY
)
  echo "measured device-to-device copy bandwidth (read + write): $bw GB/s"
  python3 "$HERE/roofline.py" "$bw" "$M"/* | tee "$R/roofline.txt"
  save
  ;;
*) sed -n 2,9p "$0"; exit 2 ;;
esac
