#!/usr/bin/env bash
# On the device machine: where a decode step goes, at 1 and at N streams. Prints wall-clock rates
# (`bench batched`), then the GPU time of every kernel of the last decode steps (ncu, graphs off so each
# kernel is its own launch), and the decode-attention kernel alone at long context. Full CSVs go to $OUT.
# usage (after stage.sh): [PARTS="wall step1 attn stepn"] [SKIP=launches] bash scripts/device/profile-breakdown.sh MODEL [SEQS=64] [CTX=512]
# stepn profiles a SEQS-sequence decode step after skipping SKIP launches (model load and the SEQS
# prompts: 33 + 719 per 16-token prompt at the 1B shape), so ncu does not replay every prefill kernel.
set -uo pipefail
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
H=/tmp/hearth/hearth
NCU=/usr/local/cuda-13.0/bin/ncu
OUT=${OUT:-/tmp/hearth/out}
mkdir -p "$OUT"
model=$1; n=${2:-64}; ctx=${3:-512}
ncu_csv() {  # $1 log name, $2 metrics, rest: ncu filter arguments then the hearth arguments
  local log=$OUT/$1 metrics=$2; shift 2
  HEARTH_CUDA_GRAPHS=0 "$NCU" --clock-control none --metrics "$metrics" --csv --print-units base \
    --log-file "$log" "$@" > /dev/null 2>&1
}
summary() {  # $1 csv, $2 "step" (only the last decode step: every step launches the same kernels) or "all"
  python3 - "$1" "$2" <<'PY'
import csv, sys, collections, re
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))]
t = collections.defaultdict(float); b = collections.defaultdict(float); cnt = collections.Counter()
ids = sorted({int(r["ID"]) for r in rows})
names = {int(r["ID"]): r["Kernel Name"] for r in rows}
last = set(ids)
if sys.argv[2] == "step":
    attn = [i for i in ids if re.match(r"decode_attention_(f16|bf16|f32)", names[i])]
    layers = len(attn) // 2  # two decode steps were profiled
    period = ids.index(attn[-1]) - ids.index(attn[-1 - layers])
    last = set(ids[-period:])
last = {str(i) for i in last}
for r in rows:
    if r["ID"] not in last: continue
    name = r["Kernel Name"].split("(")[0][:60]
    v = float(r["Metric Value"].replace(",", ""))
    if r["Metric Name"] == "gpu__time_duration.sum": t[name] += v / 1e3; cnt[name] += 1
    else: b[name] += v / 1e6
for k, us in sorted(t.items(), key=lambda x: -x[1]):
    print(f"{us:9.1f} us {b[k]:8.1f} MB x{cnt[k]:4d}  {k}")
print(f"{sum(t.values()):9.1f} us {sum(b.values()):8.1f} MB over {sum(cnt.values())} launches")
PY
}
PARTS=${PARTS:-wall step1 attn stepn}
part() { [[ " $PARTS " == *" $1 "* ]]; }
if part wall; then
echo "=== wall clock"
"$H" bench batched "$model" --device cuda --seqs 1,$n --pp 16 --tg 64 2>&1 | grep -E "^\| +[0-9]"
"$H" bench batched "$model" --device cuda --seqs 1,$n --pp $ctx --tg 64 2>&1 | grep -E "^\| +[0-9]"
"$H" bench engine "$model" --device cuda --reps 2 2>&1 | grep -E "tg128|hearth"
fi
# Each profiled run ends with two decode steps; `summary ... step` keeps the last one.
if part step1; then
ncu_csv step-1.csv gpu__time_duration.sum,dram__bytes_read.sum "$H" bench batched "$model" --device cuda --seqs 1 --pp 16 --tg 1
echo "=== one decode step, 1 sequence at 16-token context (ncu: GPU time, DRAM bytes read)"
summary "$OUT/step-1.csv" step
fi
if part attn; then
ncu_csv "attn-$n-$ctx.csv" gpu__time_duration.sum,dram__bytes_read.sum -k regex:decode_attention --launch-count 32 "$H" bench batched "$model" --device cuda --seqs $n --pp $ctx --tg 1
echo "=== decode attention, $n sequences at $ctx-token context (first decode step)"
summary "$OUT/attn-$n-$ctx.csv" all
fi
if part stepn; then
ncu_csv "step-$n.csv" gpu__time_duration.sum --launch-skip "${SKIP:-$((33 + 719 * n))}" --launch-count 5000 "$H" bench batched "$model" --device cuda --seqs $n --pp 16 --tg 1
echo "=== one decode step, $n sequences at 16-token context (ncu: GPU time)"
summary "$OUT/step-$n.csv" step
fi
