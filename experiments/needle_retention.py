#!/usr/bin/env python3
"""Which needle tokens each layer and KV head kept: passkey runs with `retention_maps: true`.

    python3 experiments/needle_retention.py RESULTS.h5 [--heads L.H,L.H ...]

For every non-full run and sample: the needle depth, key, score, and per layer and KV head the needle
`The pass key is d1 .. dn . Remember it . d1 .. dn is the pass key .` with the tokens no longer held
replaced by underscores. Token layout as models/kvlab-retrieval/README.md (each digit one token, the
needle starting at `meta_needle_position`). Needs h5py.
"""
import argparse
import json

import h5py


def needle_tokens(key):
    digits = list(str(key))
    return ["The", "pass", "key", "is"] + digits + [".", "Remember", "it", "."] + digits + ["is", "the", "pass", "key", "."]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--heads", help="only these layer.kv_head pairs, e.g. 2.0,3.1")
    args = ap.parse_args()
    only = {tuple(map(int, h.split("."))) for h in args.heads.split(",")} if args.heads else None
    with h5py.File(args.results, "r") as f:
        for name in sorted(f["runs"]):
            run = f["runs"][name]
            if run.attrs["policy"] == "full" or "retention" not in run:
                continue
            task = json.loads(run.attrs["key"])["task"]
            print(f"=== run {name}: {run.attrs['label']}  task {task['kind']} suffix={task.get('suffix')}  score {run.attrs['score']:.2f}")
            s, ret = run["samples"], run["retention"][()]
            for i in range(ret.shape[0]):
                key, start = int(s["meta_key"][i]), int(s["meta_needle_position"][i])
                print(f"sample {i}: depth {s['meta_depth'][i]:.3f} key {key} needle at token {start} score {s['score'][i]:.0f}")
                toks = needle_tokens(key)
                for layer in range(ret.shape[1]):
                    for head in range(ret.shape[2]):
                        if only and (layer, head) not in only:
                            continue
                        kept = set(int(x) for x in ret[i, layer, head] if x >= 0)
                        line = " ".join(t if start + j in kept else "_" * len(t) for j, t in enumerate(toks))
                        print(f"  L{layer} H{head}  {line}")


if __name__ == "__main__":
    main()
