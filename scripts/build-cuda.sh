#!/usr/bin/env bash
# Build `hearth` with the CUDA backend on a machine without a GPU (CUDA 13.0 toolchain from PyPI wheels,
# cached), for the lent H100 (sm_90, driver >= 580). CPU-only builds and CI do not use this.
# usage: scripts/build-cuda.sh           -> prints the path of the stripped binary
#        scripts/build-cuda.sh --tests   -> builds the GPU tests instead (layers' kernels, models' graphs), prints their binaries
#        scripts/build-cuda.sh --example NAME -> builds hearth-layers' GPU example NAME (a benchmark), prints its binary
# On the GPU machine: LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib ./hearth ...
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${HEARTH_DEV_CACHE:-$HOME/.cache/hearth-dev}
TC="$CACHE/cuda-venv"
# nvcc 13.0 exactly: the driver on the lent machines rejects PTX from newer compilers.
[ -x "$TC/bin/pip" ] || python3 -m venv "$TC"
"$TC/bin/pip" install -q --disable-pip-version-check \
  nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85 \
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35 >&2
CH=$(echo "$TC"/lib/python3*/site-packages/nvidia/cu13)
# Make the wheel folder look like a toolkit: lib64, unversioned .so names, a link-time stub libcuda.
ln -sfn lib "$CH/lib64"
( cd "$CH/lib" && for l in cublas cublasLt curand nvrtc cudart; do ln -sf "$(ls lib$l.so.[0-9]* | head -1)" lib$l.so; done )
mkdir -p "$CH/lib/stubs"
CUDARC=$(cd "$ROOT" && cargo metadata --format-version 1 --features hearth-cli/cuda | python3 -c 'import json,sys,os;print(next(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc"))')
grep -oP '^pub unsafe fn \Kcu\w+(?=\()' "$CUDARC/src/driver/sys/mod.rs" | sort -u | awk '{print "void " $1 "(void){}"}' > "$CH/lib/stubs/libcuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CH/lib/stubs/libcuda.so" "$CH/lib/stubs/libcuda_stub.c"
export CUDA_HOME="$CH" PATH="$CH/bin:$PATH" CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR="$CACHE/cuda-target" LIBRARY_PATH="$CH/lib/stubs:$CH/lib:${LIBRARY_PATH:-}"
if [ "${1:-}" = "--tests" ]; then
  ( cd "$ROOT" && cargo test --release --locked -p hearth-layers -p hearth-models --features hearth-layers/cuda,hearth-models/cuda \
      --test cuda_kernels --test cuda_graphs --no-run --message-format=json ) \
    | python3 -c '
import json, sys
exes = []
for m in map(json.loads, sys.stdin):
    if m.get("reason") == "compiler-message":
        print(m["message"]["rendered"], file=sys.stderr)
    if m.get("executable"):
        exes.append(m["executable"])
if not exes:
    sys.exit("no test binary was built")
print("\n".join(exes))'
  exit 0
fi
if [ "${1:-}" = "--example" ]; then
  ( cd "$ROOT" && cargo build --release --locked -p hearth-layers --features cuda --example "$2" >&2 )
  strip "$CARGO_TARGET_DIR/release/examples/$2"
  echo "$CARGO_TARGET_DIR/release/examples/$2"
  exit 0
fi
( cd "$ROOT" && cargo build --release --locked -p hearth-cli --features cuda >&2 )
BIN="$CARGO_TARGET_DIR/release/hearth"
strip "$BIN"
echo "$BIN"
