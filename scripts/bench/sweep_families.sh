#!/usr/bin/env bash
# Times a real-model sweep end to end: main's kvlab against this branch's, back to back on the same
# config, with the machine's load average before each run (docs/benchmarks/sweep.md).
#
#   bash scripts/bench/sweep_families.sh [CONFIG] [RUNS]
#
# CONFIG defaults to experiments/real/families_1k.yaml (calibrate Loki and KVSharer first, see its
# header). RUNS: a space-separated subset of main_t2 new_j2 main_t1 new_j1_t1 new_j1_t2 new_j2_own
# (default: all five but new_j2_own). main's binary: MAIN_BIN (default /tmp/kvlab-main/.build/release/kvlab),
# built from `git archive main | tar -x -C /tmp/kvlab-main` with `swift build -c release` there.
# Each run writes OUT/<run>.h5 and a line to OUT/times.txt; new runs are compared with main's
# (scripts/bench/compare_runs.py: every value main records, bit for bit, timings aside).
set -euo pipefail
CONFIG=${1:-experiments/real/families_1k.yaml}
RUNS=${2:-main_t2 new_j2 main_t1 new_j1_t1 new_j1_t2}
MAIN_BIN=${MAIN_BIN:-/tmp/kvlab-main/.build/release/kvlab}
NEW_BIN=${NEW_BIN:-.build/release/kvlab}
OUT=${OUT:-results/out/bench/$(basename "$CONFIG" .yaml)}
mkdir -p "$OUT"
echo "# $(date -u +%FT%TZ) $CONFIG on $(nproc) cores; main=$($MAIN_BIN --version 2>/dev/null || echo ?) new=$(git rev-parse --short HEAD)" >> "$OUT/times.txt"
for run in $RUNS; do
  case $run in
    main_t2) cmd=("$MAIN_BIN" run "$CONFIG" --threads 2) ;;
    main_t1) cmd=("$MAIN_BIN" run "$CONFIG" --threads 1) ;;
    new_j2) cmd=("$NEW_BIN" run "$CONFIG" --jobs 2) ;;
    new_j2_own) cmd=("$NEW_BIN" run "$CONFIG" --jobs 2 --no-shared-prefill) ;;
    new_j1_t1) cmd=("$NEW_BIN" run "$CONFIG" --jobs 1 --threads 1) ;;
    new_j1_t2) cmd=("$NEW_BIN" run "$CONFIG" --jobs 1 --threads 2) ;;
    *) echo "unknown run $run" >&2; exit 2 ;;
  esac
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  /usr/bin/time -f "%e %U %S %M" -o "$OUT/$run.time" "${cmd[@]}" --output "$OUT/$run.h5" --force --quiet > "$OUT/$run.log" 2>&1
  read -r wall user sys rss < "$OUT/$run.time"
  line="$run wall_s=$wall user_s=$user sys_s=$sys maxrss_kb=$rss load_before=\"$load\" load_after=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
  echo "$line" | tee -a "$OUT/times.txt"
done
for run in $RUNS; do
  case $run in new_*) for base in main_t2 main_t1; do
    [ -f "$OUT/$base.h5" ] && [ -f "$OUT/$run.h5" ] && echo "$run vs $base: $(python3 scripts/bench/compare_runs.py "$OUT/$run.h5" "$OUT/$base.h5" | head -1)" | tee -a "$OUT/times.txt" || true
  done ;; esac
done
