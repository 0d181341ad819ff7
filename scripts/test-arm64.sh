#!/usr/bin/env bash
# The CPU kernel tests (hearth-layers) for arm64, run here under qemu: the NEON path's property tests
# against the scalar reference. Not part of CI (it cross-builds candle for a second target, ~4 min
# cold); run it after changing quant/neon.rs or anything the kernels share.
#   bash scripts/test-arm64.sh [TEST FILTER]
# Installs, once: Debian's aarch64 cross linker and qemu-user, and rustup's aarch64 standard library.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
export CARGO_TARGET_DIR="${HEARTH_ARM64_TARGET_DIR:-$HOME/.cache/hearth-dev/aarch64-target}"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
cargo test -p hearth-layers --lib --target aarch64-unknown-linux-gnu --release -- --test-threads 2 "$@"
