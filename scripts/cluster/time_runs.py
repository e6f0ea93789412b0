#!/usr/bin/env python3
"""Per-run wall and CPU seconds of a sweep: runs `kvlab run CONFIG --progress [args]` and stamps
each progress line (one per committed run) with the wall clock and the process's CPU time
(/proc/<pid>/stat utime+stime, Linux). CPU time is what a run costs on a loaded box. Prints TSV:
run, task, context, policy, wall_s, cpu_s (the first run of each (model, task) includes the
full-cache reference). Used to calibrate CostModel (docs/cluster.md).

    python3 scripts/cluster/time_runs.py .build/release/kvlab CONFIG.yaml [--shard i/N ...] > runs.tsv
"""
import os, re, subprocess, sys, time

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def main():
    kvlab, config, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    p = subprocess.Popen([kvlab, "run", config, "--progress", *extra], stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True)
    line_re = re.compile(r"^\[(\d+)/(\d+)\] (\S+) (\S+) ctx (\d+): (.*?)(?: score [-0-9.na]+)?  \(eta")
    last_wall, last_cpu = time.time(), 0.0
    print("run\ttask\tcontext\tpolicy\twall_s\tcpu_s")
    for line in p.stderr:
        m = line_re.match(line)
        if not m:
            if line.startswith("running") or line.startswith("done"):
                last_wall, last_cpu = time.time(), cpu_seconds(p.pid) if line.startswith("running") else last_cpu
            print("#", line.rstrip(), file=sys.stderr)
            continue
        wall, cpu = time.time(), cpu_seconds(p.pid)
        print(f"{m.group(1)}\t{m.group(3)}\t{m.group(5)}\t{m.group(6)}\t{wall - last_wall:.3f}\t{cpu - last_cpu:.2f}", flush=True)
        last_wall, last_cpu = wall, cpu
    sys.exit(p.wait())

main()
