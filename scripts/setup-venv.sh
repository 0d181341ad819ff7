#!/usr/bin/env bash
# Create (or refresh) the project's dev venv from scripts/requirements-dev.txt, in a cache outside the clone.
# Idempotent: the venv records the hash of the requirements it was built from; a match is a fast no-op.
# usage: scripts/setup-venv.sh          -> prints the venv's python path
set -euo pipefail
CACHE=${HEARTH_DEV_CACHE:-$HOME/.cache/hearth-dev}
VENV="$CACHE/venv"
REQS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/requirements-dev.txt"
STAMP="$VENV/.requirements.sha256"
say() { echo "setup-venv: $*" >&2; }

want=$(sha256sum "$REQS" | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  echo "$VENV/bin/python"; exit 0
fi

mkdir -p "$CACHE"
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
say "installing $REQS"
# The stamp is removed first so an interrupted install is redone on the next run.
rm -f "$STAMP"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS" >&2
echo "$want" > "$STAMP"
echo "$VENV/bin/python"
