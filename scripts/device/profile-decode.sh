#!/usr/bin/env bash
# On the device machine: GPU time per kernel of a batched decode step, by Nsight Compute (ncu), for
# each batch size given; tells a GPU-side cost from a host-side one (compare with the step's wall time
# that `hearth bench batched` reports).
# usage: [PP=16] [GRAPHS=0] bash scripts/device/profile-decode.sh MODEL SEQS...
set -uo pipefail
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
H=/tmp/hearth/hearth
model=$1; shift
for n in "$@"; do
  log=/tmp/ncu-$n.csv
  HEARTH_CUDA_GRAPHS=${GRAPHS:-0} ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
    --log-file "$log" "$H" bench batched "$model" --device cuda --seqs "$n" --pp "${PP:-16}" --tg 2 > /dev/null 2>&1
  echo "=== $n sequences: GPU time of the last two decode steps, per kernel (microseconds, summed)"
  python3 - "$log" <<'PY'
import csv, sys, collections
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))]
rows = [r for r in rows if r.get("Metric Name") == "gpu__time_duration.sum"]
attn = [i for i, r in enumerate(rows) if "decode_attention" in r["Kernel Name"]]
if len(attn) < 32:
    sys.exit(f"only {len(attn)} attention launches profiled")
# One attention launch per layer per forward (16 layers at the 1B shape): the last 32 belong to the last
# two decode steps, which begin about a dozen launches before their first attention.
start = attn[-32] - 12 if len(attn) >= 32 else 0
tot = collections.defaultdict(float); cnt = collections.Counter(); grid = {}
for r in rows[start:]:
    name = r["Kernel Name"].split("(")[0][:70]
    tot[name] += float(r["Metric Value"].replace(",", "")) / 1e3
    cnt[name] += 1
    grid[name] = r["Grid Size"]
for name, us in sorted(tot.items(), key=lambda x: -x[1])[:14]:
    print(f"{us:10.1f} us  x{cnt[name]:4d}  grid {grid[name]:>16}  {name}")
print(f"{sum(tot.values()):10.1f} us  total over {sum(cnt.values())} launches")
PY
done
