"""Exact comparison of two KVLab results files' runs, matched by key: every metric and per-sample
series of the baseline (timings aside) must be present in the new file with the same bits.

    python3 scripts/bench/compare_runs.py NEW.h5 BASELINE.h5

Unlike `kvlab compare --exact`, the new file may hold metrics the baseline does not (a newer
KVLab's extra columns): what is compared is everything the baseline has. Exit 1 on a difference.
"""
import json, sys
import h5py, numpy as np

TIMINGS = {"prefill_s_per_token", "prefill_replay_s_per_token", "decode_s_per_token", "run_wall_s"}

def runs(path):
    out = {}
    with h5py.File(path, "r") as f:
        for name, g in f["runs"].items():
            attrs = {k: g.attrs[k] for k in json.loads(g.attrs["metrics"])}
            samples = {k: g["samples"][k][()] for k in g["samples"]} if "samples" in g else {}
            retention = g["retention"][()] if "retention" in g else None
            out[g.attrs["key"]] = (g.attrs["label"], g.attrs["status"], attrs, samples, retention)
    return out

new, base = runs(sys.argv[1]), runs(sys.argv[2])
diffs, compared, values = [], 0, 0
for key, (label, status, attrs, samples, retention) in base.items():
    if key not in new:
        diffs.append(f"missing run: {label}"); continue
    nlabel, nstatus, nattrs, nsamples, nretention = new[key]
    compared += 1
    if status != nstatus: diffs.append(f"{label}: status {status!r} vs {nstatus!r}")
    for k, v in attrs.items():
        if k in TIMINGS: continue
        values += 1
        w = nattrs.get(k)
        if w is None or not (np.float64(v).tobytes() == np.float64(w).tobytes() or (np.isnan(v) and np.isnan(w))):
            diffs.append(f"{label}: {k} {v!r} vs {w!r}")
    for k, v in samples.items():
        if k in TIMINGS: continue
        w = nsamples.get(k)
        values += v.size
        if w is None or v.shape != w.shape or not np.array_equal(v, w, equal_nan=True):
            diffs.append(f"{label}: per-sample {k} differs")
    if retention is not None and (nretention is None or not np.array_equal(retention, nretention)):
        diffs.append(f"{label}: retention maps differ")
print(f"{compared} runs compared, {values} values; {len(diffs)} differences")
for d in diffs[:40]: print("  " + d)
sys.exit(1 if diffs else 0)
