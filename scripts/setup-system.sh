#!/usr/bin/env bash
# Install the Debian packages the tests drive (real tools, not mocks). Idempotent: packages already
# present are skipped, so a warm machine pays nothing. Needs root (CI and dev machines run as root);
# without it, prints what is missing and continues, and the tests that need a tool say so.
set -euo pipefail
# One package per line: the tool it provides, then the Debian package.
NEEDED=(
  "tmux tmux"
  "promtool prometheus"
  "chromium chromium"
  "chromedriver chromium-driver"
  "mkfs.xfs xfsprogs"
)
missing=()
for entry in "${NEEDED[@]}"; do
  read -r tool pkg <<<"$entry"
  command -v "$tool" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "setup-system: not root; missing packages: ${missing[*]}" >&2
  exit 0
fi
echo "setup-system: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
