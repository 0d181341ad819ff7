#!/usr/bin/env bash
# On the device machine: gather what this call carried under .device/ into /tmp/hearth, which lasts
# while the machine stays warm. Files over the 64 MiB carry limit travel as chunks over several calls
# (`split -b 62M -d FILE .device/chunks/NAME.part-` plus `NAME.sha256` here); once every chunk of a file
# has arrived and the concatenation matches its sha256, it is assembled into /tmp/hearth/models/NAME.
#   .device/hearth.xz      the CUDA build of hearth (scripts/build-cuda.sh, then xz)
#   .device/chunks/*       model chunks and their .sha256 files
set -euo pipefail
W=/tmp/hearth
mkdir -p "$W/chunks" "$W/models"
if [ -f .device/hearth.xz ]; then
  xz -dc .device/hearth.xz > "$W/hearth.tmp" && chmod +x "$W/hearth.tmp" && mv "$W/hearth.tmp" "$W/hearth"
fi
if [ -d .device/chunks ]; then cp .device/chunks/* "$W/chunks/"; fi
for sum in "$W"/chunks/*.sha256; do
  [ -e "$sum" ] || continue
  name=$(basename "$sum" .sha256)
  [ -f "$W/models/$name" ] && continue
  cat "$W/chunks/$name".part-* > "$W/models/$name.tmp" 2>/dev/null || true
  want=$(awk '{print $1}' "$sum")
  if [ "$(sha256sum "$W/models/$name.tmp" | awk '{print $1}')" = "$want" ]; then
    mv "$W/models/$name.tmp" "$W/models/$name" && rm -f "$W/chunks/$name".part-*
    echo "stage: assembled $name"
  else
    rm -f "$W/models/$name.tmp"
    echo "stage: $name incomplete ($(ls "$W/chunks/$name".part-* 2>/dev/null | wc -l) chunks so far)"
  fi
done
ls -la "$W" "$W/models"
