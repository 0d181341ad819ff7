#!/usr/bin/env bash
# Build llama.cpp's benchmark tools with CUDA ON the lent GPU machine (H100, sm_90), from the source tarball
# that scripts/device/pack-llama-src.sh made here. Only llama-bench, llama-batched-bench and llama-quantize
# are built (-j16, about 5-10 minutes); a second run finds them and does nothing.
#
# usage (on the device, in the repo root, with carry [".device"]):
#     scripts/device/build-llama-cuda.sh [TARBALL]     -> prints the bin directory, /tmp/llama-build/bin
#         TARBALL defaults to .device/llama-src.tar.gz
# environment (defaults in brackets):
#     NVCC [/usr/local/cuda-13.0/bin/nvcc]   CUDA_ARCH [90]   JOBS [16]
#     LLAMA_SRC [/tmp/llama-src]   LLAMA_BUILD [/tmp/llama-build]
#     LLAMA_CUDA [1]   0 configures and builds for the CPU only (to check this script on a machine without CUDA)
# The device image has cmake and ninja (pip packages) and nvcc 13.0; nothing is fetched.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TARBALL=${1:-$REPO/.device/llama-src.tar.gz}
SRC=${LLAMA_SRC:-/tmp/llama-src}
BUILD=${LLAMA_BUILD:-/tmp/llama-build}
NVCC=${NVCC:-/usr/local/cuda-13.0/bin/nvcc}
CUDA_ARCH=${CUDA_ARCH:-90}
JOBS=${JOBS:-16}
USE_CUDA=${LLAMA_CUDA:-1}
TARGETS=(llama-bench llama-batched-bench llama-quantize)
BIN="$BUILD/bin"
say() { echo "build-llama-cuda: $*" >&2; }

have_all=1
for t in "${TARGETS[@]}"; do [ -x "$BIN/$t" ] || have_all=0; done
if [ $have_all = 1 ]; then
  say "already built in $BIN"
  echo "$BIN"
  exit 0
fi

# Tools: cmake and ninja from PATH, else from their Python packages.
find_tool() {
  local name=$1 mod=$2 dir
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  dir=$(python3 -c "import $mod, os; print(getattr($mod, 'CMAKE_BIN_DIR', None) or getattr($mod, 'BIN_DIR'))" 2>/dev/null) \
    && [ -x "$dir/$name" ] && { echo "$dir/$name"; return; }
  return 1
}
CMAKE=$(find_tool cmake cmake) || { say "no cmake found"; exit 1; }
GEN=(-G "Unix Makefiles")
if NINJA=$(find_tool ninja ninja); then GEN=(-G Ninja -DCMAKE_MAKE_PROGRAM="$NINJA"); fi

if [ ! -f "$SRC/CMakeLists.txt" ]; then
  [ -f "$TARBALL" ] || { say "no $TARBALL (run scripts/device/pack-llama-src.sh here, then carry .device)"; exit 1; }
  say "extracting $TARBALL to $SRC"
  rm -rf "$SRC"
  mkdir -p "$SRC"
  tar xzf "$TARBALL" -C "$SRC" --strip-components=1
fi

CUDA_FLAGS=()
if [ "$USE_CUDA" = 1 ]; then
  [ -x "$NVCC" ] || { say "no nvcc at $NVCC (set NVCC)"; exit 1; }
  export PATH="$(dirname "$NVCC"):$PATH" CUDACXX="$NVCC"
  CUDA_FLAGS=(-DGGML_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH")
fi

say "configuring in $BUILD (${GEN[1]}, cuda=$USE_CUDA, arch=$CUDA_ARCH)"
# LLAMA_CURL is deprecated in this version (a warning) and kept for older sources; the server, web UI,
# examples, tests and the unified app are off: only tools/ is needed.
"$CMAKE" -S "$SRC" -B "$BUILD" "${GEN[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  "${CUDA_FLAGS[@]}" \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF >&2

say "building ${TARGETS[*]} with -j$JOBS"
start=$(date +%s)
"$CMAKE" --build "$BUILD" --config Release --target "${TARGETS[@]}" -j "$JOBS" >&2
say "built in $(( $(date +%s) - start ))s"
for t in "${TARGETS[@]}"; do [ -x "$BIN/$t" ] || { say "missing $BIN/$t"; exit 1; }; done
echo "$BIN"
