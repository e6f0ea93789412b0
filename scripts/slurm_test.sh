#!/usr/bin/env bash
# `kvlab slurm` against a real Slurm: installs Debian's slurm-wlm and munge if missing (root),
# starts munged, slurmctld and slurmd as a one-node cluster on localhost (generated slurm.conf,
# private munge key and socket, state under a temporary folder), and:
#   1. bad input: more shards than grid points, an unknown partition, an invalid config -> errors,
#      nothing written;
#   2. submits a small sweep (the shipped models/kvlab-retrieval, 24 runs) as a 4-task array plus
#      its merge job, waits, and checks the merged file equals an unsharded run of the same config
#      bit for bit (timings aside), every grid point exactly once; prints each shard's estimated
#      cost next to its measured wall and CPU time;
#   3. a merge with a missing shard is refused, nothing written;
#   4. submits again, kills one array task mid-run (scancel --signal=KILL), requeues it
#      (scontrol requeue), and checks the requeued task kept its finished runs, the merge is still
#      equal, every run present exactly once;
# then stops the daemons it started. 1-4 minutes on 2 cores once kvlab is built.
#
#   bash scripts/slurm_test.sh            # KVLAB_SLURM_KEEP=1 keeps the work folder
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { echo; echo "== $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# --- Install ---------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    step "installing slurm-wlm and munge"
    [ "$(id -u)" = 0 ] || fail "slurm-wlm and munge are not installed; run as root (apt-get) or install them first"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
fi
bash scripts/setup.sh >/dev/null
step "building kvlab (release)"
swift build -c release --product kvlab 2>&1 | tail -1
KVLAB="$ROOT/.build/release/kvlab"

# --- A one-node cluster ----------------------------------------------------------------------
WORK=$(mktemp -d /tmp/kvlab-slurm.XXXXXX)
NODE=$(hostname -s)
CPUS=$(nproc)
CTLD_PORT=${KVLAB_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${KVLAB_SLURMD_PORT:-16818}
mkdir -p "$WORK/munge" "$WORK/state" "$WORK/spool" "$WORK/log"
chmod 700 "$WORK/munge"
export SLURM_CONF="$WORK/slurm.conf"

cleanup() {
    set +e
    if [ -f "$WORK/slurmctld.pid" ]; then
        scancel --quiet --user="$(id -un)" 2>/dev/null
    fi
    for d in slurmd slurmctld munged; do
        if [ -f "$WORK/$d.pid" ]; then
            pid=$(cat "$WORK/$d.pid")
            kill "$pid" 2>/dev/null
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null
        fi
    done
    if [ "${KVLAB_SLURM_KEEP:-0}" = 1 ]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

step "starting munged, slurmctld, slurmd on $NODE ($CPUS CPUs) in $WORK"
mungekey --create --keyfile="$WORK/munge/munge.key" --force
chmod 400 "$WORK/munge/munge.key"
munged --force --key-file="$WORK/munge/munge.key" --socket="$WORK/munge/munge.sock" \
    --pid-file="$WORK/munged.pid" --log-file="$WORK/log/munged.log" --seed-file="$WORK/munge/seed"
cat > "$SLURM_CONF" <<EOF
ClusterName=kvlabtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$WORK/munge/munge.sock
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
JobRequeue=1
MinJobAge=3600
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -i
slurmd
for _ in $(seq 60); do
    state=$(sinfo -h -o %t 2>/dev/null | head -1 || true)
    [ "$state" = idle ] && break
    sleep 1
done
[ "$state" = idle ] || { tail -20 "$WORK/log/slurmctld.log" "$WORK/log/slurmd.log"; fail "node not idle (state '$state')"; }
sinfo

# --- The sweep -------------------------------------------------------------------------------
# kvlab-retrieval, 24 runs of mixed cost (contexts 512 to 2048, four policy cost classes).
sweep() {   # sweep OUTPUT
cat <<EOF
name: slurmtest
output: $1
seed: 11
threads: 1
models:
  - id: kvlab-retrieval
    path: models/kvlab-retrieval
tasks:
  - task: passkey
    context: [1024, 2048]
    samples: 2
  - task: fidelity
    context: [512, 2048]
    samples: 2
    eval_tokens: 16
policies:
  - policy: full
  - policy: streaming_llm
    keep: 0.25
  - policy: snapkv
    keep: [0.125, 0.25]
  - policy: h2o
    keep: 0.25
  - policy: quest
    budget: 64
    dense_layers: 0
EOF
}
mkdir -p "$WORK/r1" "$WORK/r2"
sweep "$WORK/whole.h5" > "$WORK/whole.yaml"
sweep "$WORK/r1/sweep.h5" > "$WORK/r1.yaml"
sweep "$WORK/r2/sweep.h5" > "$WORK/r2.yaml"
POINTS=$("$KVLAB" validate "$WORK/r1.yaml" | sed -E 's/.* ([0-9]+) runs.*/\1/')
echo "grid: $POINTS points"

# --- 1. Bad input ----------------------------------------------------------------------------
step "bad input: clear errors, nothing written"
expect_error() {   # expect_error "text in the error" command...
    local want=$1; shift
    if out=$("$@" 2>&1); then fail "expected an error from: $*"; fi
    grep -qF -- "$want" <<<"$out" || fail "error of '$*' lacks '$want': $out"
    echo "ok: $(grep -F -- "$want" <<<"$out" | head -1)"
}
expect_error "only $POINTS grid points" "$KVLAB" slurm "$WORK/r1.yaml" --shards $((POINTS + 1))
expect_error "no such partition (sinfo lists: debug)" "$KVLAB" slurm "$WORK/r1.yaml" --shards 4 --partition gpu-nonexistent
sed 's/policy: quest/policy: questt/' "$WORK/r1.yaml" > "$WORK/bad.yaml"
expect_error "bad.yaml:" "$KVLAB" slurm "$WORK/bad.yaml" --shards 4 --submit
[ ! -e "$WORK/r1/sweep.slurm" ] || fail "a refused 'kvlab slurm' wrote $WORK/r1/sweep.slurm"
[ -z "$(squeue -h)" ] || fail "a refused 'kvlab slurm' submitted jobs"

# --- The unsharded reference -----------------------------------------------------------------
step "unsharded reference run"
t0=$(date +%s)
"$KVLAB" run "$WORK/whole.yaml" --quiet > /dev/null
echo "unsharded: $(( $(date +%s) - t0 )) s"

wait_jobs() {   # wait_jobs JOBID... : until none is pending or running
    for _ in $(seq 1800); do
        [ -z "$(squeue -h -j "$(IFS=,; echo "$*")" 2>/dev/null)" ] && return 0
        sleep 1
    done
    fail "jobs $* still queued after 30 minutes"
}
job_state() { scontrol show job "$1" | grep -o 'JobState=[A-Z_]*' | head -1 | cut -d= -f2; }
submit() {   # submit CONFIG -> sets ARRAY and MERGE
    local out
    out=$("$KVLAB" slurm "$1" --shards 4 --partition debug --time 30:00 --submit)
    echo "$out"
    ARRAY=$(sed -nE 's/.*submitted array job ([0-9]+).*/\1/p' <<<"$out")
    MERGE=$(sed -nE 's/.*merge job ([0-9]+).*/\1/p' <<<"$out")
    [ -n "$ARRAY" ] && [ -n "$MERGE" ] || fail "no job ids in: $out"
}
check_merged() {   # check_merged OUTPUT: merge job ok, equal to the unsharded run, every point once
    [ "$(job_state "$MERGE")" = COMPLETED ] || { cat "$(dirname "$1")"/sweep.slurm/logs/merge-*.log; fail "merge job $MERGE: $(job_state "$MERGE")"; }
    "$KVLAB" compare --exact "$1" "$WORK/whole.h5"
    local idx
    idx=$("$KVLAB" report "$1" --csv --columns index | tail -n +2)
    [ "$(wc -l <<<"$idx")" = "$POINTS" ] && [ "$(sort -u <<<"$idx" | wc -l)" = "$POINTS" ] \
        || fail "$1 does not hold each of the $POINTS grid points exactly once"
    echo "ok: $1 holds each of the $POINTS grid points exactly once"
}

# --- 2. A 4-task array and its merge job -----------------------------------------------------
step "round 1: 4-task array + merge job"
submit "$WORK/r1.yaml"
wait_jobs "$ARRAY" "$MERGE"
check_merged "$WORK/r1/sweep.h5"
"$KVLAB" status "$WORK/r1.yaml"

step "shard balance: estimated cost vs measured time per array task"
python3 - "$WORK/r1/sweep.slurm" <<'EOF'
import glob, re, sys
folder = sys.argv[1]
est = {int(m.group(1)): float(m.group(3)) for m in
       (re.match(r"# shard (\d+): (\d+) runs, (\S+)", l) for l in open(f"{folder}/plan.tsv")) if m}
rows = []
for s in sorted(est):
    log = open(glob.glob(f"{folder}/logs/shard{s}-*.log")[0]).read()
    start = int(re.findall(r", start (\d+)", log)[0]); end = int(re.findall(r", end (\d+)", log)[-1])
    cpu = re.findall(r"kvlab cpu ([0-9.]+) user ([0-9.]+) sys", log)
    rows.append((s, est[s], end - start, sum(float(u) + float(y) for u, y in cpu)))
te, tw, tc = (sum(r[i] for r in rows) for i in (1, 2, 3))
print("shard  est. cost  est. share  wall s  wall share  cpu s  cpu share")
for s, e, w, c in rows:
    print(f"{s:5d}  {e:9.3e}  {100*e/te:9.1f}%  {w:6d}  {100*w/tw:9.1f}%  {c:5.1f}  {100*c/tc:8.1f}%")
print(f"max/min  estimate {max(r[1] for r in rows)/min(r[1] for r in rows):.3f}  wall {max(r[2] for r in rows)/max(min(r[2] for r in rows),1):.3f}"
      f"  cpu {max(r[3] for r in rows)/max(min(r[3] for r in rows),1e-9):.3f}")
EOF

# --- 3. Merge with a missing shard -----------------------------------------------------------
step "merge with a missing shard: refused, nothing written"
expect_error "missing shard 2/4" "$KVLAB" merge "$WORK/partial.h5" "$WORK"/r1/sweep.shard{0,1,3}of4.h5
[ ! -e "$WORK/partial.h5" ] || fail "a refused merge wrote $WORK/partial.h5"

# --- 4. Kill one array task mid-run, requeue it ----------------------------------------------
step "round 2: kill one array task mid-run with SIGKILL, requeue it"
submit "$WORK/r2.yaml"
# The victim: the running task with the most planned runs, once it has committed some but not all.
victim=""
for _ in $(seq 1200); do
    for s in $(squeue -h -r -j "$ARRAY" -t RUNNING -o %K 2>/dev/null); do
        planned=$(awk -F'\t' -v s="$s" '$1 == s' "$WORK/r2/sweep.slurm/plan.tsv" | wc -l)
        f="$WORK/r2/sweep.shard${s}of4.h5"
        done_runs=$([ -f "$f" ] && "$KVLAB" report "$f" --csv --columns index 2>/dev/null | tail -n +2 | wc -l || echo 0)
        if [ "$done_runs" -ge 1 ] && [ "$done_runs" -lt "$((planned - 1))" ]; then victim=$s; break 2; fi
    done
    sleep 0.5
done
[ -n "$victim" ] || fail "no array task was caught mid-shard (the sweep ran too fast?)"
columns=$("$KVLAB" report "$WORK/r2/sweep.shard${victim}of4.h5" --csv | head -1)
before=$("$KVLAB" report "$WORK/r2/sweep.shard${victim}of4.h5" --csv --columns "$columns" | tail -n +2)
scancel --signal=KILL "${ARRAY}_${victim}"
echo "killed task ${ARRAY}_${victim} after $(wc -l <<<"$before") committed runs"
for _ in $(seq 120); do
    state=$(job_state "${ARRAY}_${victim}")
    case "$state" in RUNNING|COMPLETING) sleep 0.5 ;; *) break ;; esac
done
echo "task ${ARRAY}_${victim}: $state"
[ "$state" != COMPLETED ] || fail "the killed task completed (the kill missed it)"
scontrol requeue "${ARRAY}_${victim}"
# Slurm holds a requeued job back for a while (EligibleTime); let it start now.
scontrol update JobId="${ARRAY}_${victim}" StartTime=now
echo "requeued ${ARRAY}_${victim}"
wait_jobs "$ARRAY" "$MERGE"
check_merged "$WORK/r2/sweep.h5"
after=$("$KVLAB" report "$WORK/r2/sweep.shard${victim}of4.h5" --csv --columns "$columns" | tail -n +2)
while read -r line; do
    grep -qxF "$line" <<<"$after" || fail "run '$line' committed before the kill was not kept as it was (timings included)"
done <<<"$before"
log=$(cat "$WORK"/r2/sweep.slurm/logs/shard"$victim"-*.log)
grep -q "restart 1" <<<"$log" || fail "the requeued task's log has no 'restart 1'"
skipped=$(grep -oE "[0-9]+ skipped" <<<"$log" | tail -1 | cut -d' ' -f1)
[ "${skipped:-0}" -ge "$(wc -l <<<"$before")" ] || fail "the requeued task skipped ${skipped:-0} runs, expected >= $(wc -l <<<"$before")"
echo "ok: the requeued task kept its $(wc -l <<<"$before") finished runs (skipped $skipped) and ran the rest"
"$KVLAB" status "$WORK/r2.yaml"

step "PASS: kvlab slurm against Slurm $(sinfo -V | cut -d' ' -f2)"
