#!/usr/bin/env bash
# The disk-full and corrupted-file grids of issue 16, as counts.
#
#   bash scripts/robustness/fault_grid.sh [KVLAB] [FLIPS]     (default .build/release/kvlab, 400)
#
# Disk full: `run` (experiments/smoke.yaml), `merge` and `generate --logits-out` write into a
# file system of each of 17 sizes (a tmpfs when run as root; otherwise a file-size rlimit with
# SIGXFSZ ignored, which fails writes with EFBIG the same way). Corruption: FLIPS single-byte
# changes (random offset and value, seed 1) of a finished results file, each given to `report`,
# `merge`, `compare` and `run` (resuming onto it). Counted per command: crashes (a signal, exit
# >= 128, or a sanitizer report), clean errors (exit 1 or 2 with one message), successes, damaged
# files (an existing results file changed or unreadable after a failed command), and temporary
# files left behind. With an ASan build as KVLAB (swift build -Xswiftc -sanitize=address) a
# memory error anywhere also counts as a crash.
set -uo pipefail
cd "$(dirname "$0")/../.."
K=$(realpath "${1:-.build/release/kvlab}")
FLIPS=${2:-400}
W=$(mktemp -d /tmp/kvlab-faults-XXXXXX)
trap 'mountpoint -q "$W/fs" && umount "$W/fs"; rm -rf "$W"' EXIT
export ASAN_OPTIONS=detect_leaks=0
sizes_kb=(16 32 48 64 80 96 128 160 192 256 320 384 448 512 640 768 1024)
root=0
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$W/probe"
    if mount -t tmpfs -o size=16k tmpfs "$W/probe" 2>/dev/null; then umount "$W/probe"; root=1; fi
fi

# classify RC OUTPUT -> crash | error | ok
classify() {
    if [ "$1" -ge 124 ] || grep -qE "AddressSanitizer|Segmentation fault|Fatal error|Illegal instruction" <<<"$2"; then echo crash
    elif [ "$1" -ne 0 ]; then echo error; else echo ok; fi
}

# in_fs SIZE_KB CMD...: runs CMD with $W/fs limited to SIZE_KB
in_fs() {
    local kb=$1; shift
    mkdir -p "$W/fs"
    if [ $root = 1 ]; then
        mount -t tmpfs -o "size=${kb}k" tmpfs "$W/fs"
        timeout 300 "$@" 2>&1; local rc=$?
        return $rc
    else
        ( trap '' XFSZ; ulimit -f $((kb)); timeout 300 "$@" ) 2>&1
    fi
}
out_fs() { if [ $root = 1 ]; then umount "$W/fs"; else rm -rf "$W/fs"; fi; }

declare -A count
tally() { count["$1 $2"]=$(( ${count["$1 $2"]:-0} + 1 )); }

echo "== disk full ($([ $root = 1 ] && echo tmpfs || echo 'file-size rlimit'), ${#sizes_kb[@]} sizes) =="
mkdir -p "$W/in"
"$K" run experiments/smoke.yaml --output "$W/in/smoke.h5" --quiet > /dev/null 2>&1
"$K" run experiments/smoke.yaml --shard 0/2 --output "$W/in/s0.h5" --quiet > /dev/null 2>&1
"$K" run experiments/smoke.yaml --shard 1/2 --output "$W/in/s1.h5" --quiet > /dev/null 2>&1
for kb in "${sizes_kb[@]}"; do
    # run: a sweep that starts from nothing; whatever it committed must stay readable.
    out=$(in_fs "$kb" "$K" run experiments/smoke.yaml --output "$W/fs/s.h5" --quiet); rc=$?
    c=$(classify $rc "$out"); tally run "$c"
    if [ -f "$W/fs/s.h5" ] && ! "$K" report "$W/fs/s.h5" > /dev/null 2>&1; then tally run damaged; fi
    ls -a "$W/fs" | grep -q '\.tmp-' && tally run leftover
    [ "$c" = crash ] && echo "run ${kb}k: CRASH rc=$rc: $(tail -c 300 <<<"$out")"
    [ "$kb" = 32 ] && echo "run ${kb}k (sample): $(grep -m1 Error <<<"$out")"
    out_fs
    # merge into a full file system
    out=$(in_fs "$kb" "$K" merge "$W/fs/m.h5" "$W/in/s0.h5" "$W/in/s1.h5"); rc=$?
    c=$(classify $rc "$out"); tally merge "$c"
    if [ -f "$W/fs/m.h5" ] && ! "$K" report "$W/fs/m.h5" > /dev/null 2>&1; then tally merge damaged; fi
    ls -a "$W/fs" | grep -q '\.tmp-' && tally merge leftover
    [ "$c" = crash ] && echo "merge ${kb}k: CRASH rc=$rc: $(tail -c 300 <<<"$out")"
    out_fs
    # generate --logits-out (2.5 MB of logits for 12 prompt tokens of a 49152-token vocabulary)
    out=$(in_fs "$kb" "$K" generate --model synthetic:tiny,vocab=49152 --prompt-ids 1,2,3,4,5,6,7,8,9,10,11,12 \
          --max-new-tokens 2 --logits-out "$W/fs/l.h5"); rc=$?
    c=$(classify $rc "$out"); tally generate "$c"
    ls -a "$W/fs" | grep -q '\.tmp-' && tally generate leftover
    [ "$c" = crash ] && echo "generate ${kb}k: CRASH rc=$rc: $(tail -c 300 <<<"$out")"
    out_fs
done
for cmd in run merge generate; do
    printf '%-9s crashes %2d  errors %2d  ok %2d  damaged files %d  temporary files left %d\n' "$cmd" \
        "${count["$cmd crash"]:-0}" "${count["$cmd error"]:-0}" "${count["$cmd ok"]:-0}" "${count["$cmd damaged"]:-0}" "${count["$cmd leftover"]:-0}"
done

echo "== corrupted results file ($FLIPS single-byte changes of $(stat -c %s "$W/in/smoke.h5") bytes) =="
python3 - "$W/in/smoke.h5" "$W/flips" "$FLIPS" <<'PY'
import os, random, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, "rb").read()
random.seed(1)
os.makedirs(dst, exist_ok=True)
for i in range(n):
    off = random.randrange(len(data)); b = bytearray(data)
    b[off] ^= random.randrange(1, 256)
    open(f"{dst}/{i:03d}-{off}.h5", "wb").write(b)
PY
declare -A fc sample
for f in "$W"/flips/*.h5; do
    sum=$(sha256sum "$f" | cut -d' ' -f1)
    for cmd in report merge compare run; do
        case $cmd in
            report) out=$("$K" report "$f" 2>&1); rc=$?;;
            merge) rm -f "$W/m.h5"; out=$("$K" merge "$W/m.h5" "$f" 2>&1); rc=$?;;
            compare) out=$("$K" compare "$f" "$W/in/smoke.h5" 2>&1); rc=$?;;
            run) cp "$f" "$W/resume.h5"; out=$("$K" run experiments/smoke.yaml --output "$W/resume.h5" --quiet 2>&1); rc=$?
                 cmp -s "$f" "$W/resume.h5" || { [ $rc -ne 0 ] && fc["run damaged"]=$(( ${fc["run damaged"]:-0} + 1 )); };;
        esac
        c=$(classify $rc "$out"); fc["$cmd $c"]=$(( ${fc["$cmd $c"]:-0} + 1 ))
        [ "$c" = crash ] && echo "$cmd $(basename "$f"): CRASH rc=$rc"
        if [ "$c" = error ] && [ -z "${sample[$cmd]:-}" ]; then sample[$cmd]=1; echo "$cmd (sample error): $(grep -m1 -i error <<<"$out" | cut -c1-220)"; fi
    done
    [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sum" ] || fc["input damaged"]=$(( ${fc["input damaged"]:-0} + 1 ))
done
for cmd in report merge compare run; do
    printf '%-9s crashes %3d  errors %3d  ok %3d\n' "$cmd" "${fc["$cmd crash"]:-0}" "${fc["$cmd error"]:-0}" "${fc["$cmd ok"]:-0}"
done
echo "inputs changed by a command: ${fc["input damaged"]:-0}; files a failed resume changed: ${fc["run damaged"]:-0}"
