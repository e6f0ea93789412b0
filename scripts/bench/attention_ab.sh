#!/usr/bin/env bash
# Before/after of `kvlab bench attention` between two kvlab binaries on the same machine: the
# binaries alternate round by round (so both see the same machine states), each round one full
# run of the benchmark (all policies interleaved with the full step inside it); at the end, per
# binary and context, the median over rounds of each policy's speedup over the full step.
#
#   scripts/bench/attention_ab.sh OLD_BIN NEW_BIN ROUNDS [bench attention arguments...]
#   e.g. scripts/bench/attention_ab.sh /tmp/kvlab-old .build/release/kvlab 3 \
#          --model models/SmolLM2-135M-Instruct.Q4_1.gguf --contexts 8192 --repeats 15 \
#          --quest-fraction 0.125 --loki-calibration results/real/calibration/loki-smollm2.h5
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 OLD_BIN NEW_BIN ROUNDS [bench attention arguments...]" >&2; exit 2; }
old=$1 new=$2 rounds=$3; shift 3
log=$(mktemp)
for r in $(seq 1 "$rounds"); do
  for bin in "$old" "$new"; do
    echo "== round $r $bin load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$log"
    # the median rows only (the "best of the repeats" rows follow their header)
    "$bin" bench attention "$@" 2>/dev/null | awk '/^best of/ { exit } /^ +[0-9]+ +[0-9.]+ / { print }' | tee -a "$log"
  done
done
python3 - "$log" "$old" "$new" <<'PY'
import re, statistics, sys
log, old, new = sys.argv[1:]
rows = {}   # (bin, context) -> list of (full, quest x, loki x, oracle x)
bin = None
for line in open(log):
    if line.startswith("== "):
        bin = line.split()[3]
        continue
    m = re.match(r"\s*(\d+)\s+([\d.]+)(.*)", line)
    if not m: continue
    xs = [float(x) for x in re.findall(r"\(\s*([\d.]+)x\)", m.group(3))]
    rows.setdefault((bin, int(m.group(1))), []).append([float(m.group(2))] + xs)
print("\nmedians over rounds (full ms; speedup over full: quest, loki, oracle as printed)")
for (b, T), rs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0] != old)):
    cols = list(zip(*rs))
    med = [statistics.median(c) for c in cols]
    span = ["%.2f-%.2f" % (min(c), max(c)) for c in cols[1:]]
    print("%-28s %6d  full %7.3f ms  " % (("old " if b == old else "new ") + b[-22:], T, med[0]) +
          "  ".join("%.2fx [%s]" % (m, s) for m, s in zip(med[1:], span)) + "  (%d rounds)" % len(rs))
PY
rm -f "$log"
