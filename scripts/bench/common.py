"""Helpers shared by the benchmark scripts of scripts/bench/ (run as scripts: their folder is on
sys.path, so `from common import ...` works from any working directory)."""
import json
import os
import subprocess
import sys


class SplitMix64:
    """KVLab's SeededRandom (Sources/KVTensor/Random.swift): the same ids on both sides."""
    MASK = (1 << 64) - 1

    def __init__(self, seed):
        self.state = seed & self.MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & self.MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return z ^ (z >> 31)


def loadavg():
    """The 1-minute load average, rounded (recorded next to every timed run)."""
    return round(os.getloadavg()[0], 2)


def run_json(cmd, what="kvlab"):
    """Runs `cmd`, exits with its output on failure, and returns the last JSON line of its stdout
    with the command and the load average before and after."""
    before = loadavg()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"{what} exited with {p.returncode}: {' '.join(cmd)}")
    res = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
    res.update(command=" ".join(cmd), load_before=before, load_after=loadavg())
    return res
