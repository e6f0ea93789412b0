#!/usr/bin/env python3
"""KVLab decode tokens/s on one model: weights stored (packed / 16-bit, as the file holds them) vs
f32 (dequantized at load), on 1 and 2 threads, in interleaved rounds.

Each round runs the four configurations (stored/f32 x 1/2 threads) one after the other, each in its
own process (`kvlab bench decoder --prefill-once`: prefill the context once, untimed, then R
consecutive windows of N single-token steps; the median window), rotating the order by one each
round so that no configuration always runs first. The 1-minute load average is recorded before
and after each run (the machine is shared). Reported per context: the median and range over rounds
of each configuration's tok/s, and of the per-round ratios stored/f32 (same threads) and
2 threads / 1 thread (same weights), each ratio taken from runs of the same round.

    swift build -c release --product kvlab
    python3 scripts/bench/decode_weights_threads.py --rounds 3
    # -> results/bench/decode_weights_threads.json and a markdown table on stdout
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

from common import run_json

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = [("stored", 1), ("stored", 2), ("f32", 1), ("f32", 2)]


def run(args, weights, threads):
    cmd = [args.kvlab, "bench", "decoder", "--model", args.model, "--weights", weights, "--prefill", "16",
           "--decode-contexts", args.contexts, "--decode-tokens", str(args.steps), "--repeats", str(args.repeats),
           "--threads", str(threads), "--prefill-once", "--json"]
    return run_json(cmd)


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kvlab", default=os.path.join(REPO, ".build/release/kvlab"))
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--contexts", default="512")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--out", default=os.path.join(REPO, "results/bench/decode_weights_threads.json"))
    args = ap.parse_args()
    contexts = args.contexts.split(",")
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    rounds = []
    for r in range(args.rounds):
        order = CONFIGS[r % 4:] + CONFIGS[:r % 4]
        rec = {}
        for w, t in order:
            res = run(args, w, t)
            rec[f"{w}/{t}"] = res
            print(f"round {r + 1} {w:6s} {t} thread(s): " + "  ".join(f"@{c} {v:6.2f} tok/s" for c, v in
                  res["decode_tok_s"].items()) + f"  (load {res['load_before']} -> {res['load_after']})", flush=True)
        rounds.append(rec)

    table = []
    for c in contexts:
        tok = {f"{w}/{t}": [rd[f"{w}/{t}"]["decode_tok_s"][c] for rd in rounds] for w, t in CONFIGS}
        row = {"context": int(c), **{k: summary(v) for k, v in tok.items()}}
        for t in (1, 2):
            row[f"stored_over_f32/{t}"] = summary([a / b for a, b in zip(tok[f"stored/{t}"], tok[f"f32/{t}"])])
        for w in ("stored", "f32"):
            row[f"2_over_1/{w}"] = summary([a / b for a, b in zip(tok[f"{w}/2"], tok[f"{w}/1"])])
        table.append(row)
    loads = [v for rd in rounds for res in rd.values() for v in (res["load_before"], res["load_after"])]
    first = rounds[0]
    out = {"script": "scripts/bench/decode_weights_threads.py", "started_utc": started,
           "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "argv": sys.argv[1:], "model": args.model, "rounds": args.rounds, "repeats": args.repeats, "steps": args.steps,
           "weight_types": {w: first[f"{w}/1"]["weight_types"] for w in ("stored", "f32")},
           "weights_bytes": {w: first[f"{w}/1"]["weights_bytes"] for w in ("stored", "f32")},
           "load_1min": summary(loads),
           "git_commit": subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
           "table": table, "round_runs": rounds}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)

    fmt = lambda s, d=1: f"{s['median']:.{d}f} ({s['min']:.{d}f}–{s['max']:.{d}f})"
    print("\n| context | stored 1t | stored 2t | f32 1t | f32 2t | stored/f32 1t | stored/f32 2t | 2t/1t stored | 2t/1t f32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['context']} | " + " | ".join(fmt(row[k]) for k in ("stored/1", "stored/2", "f32/1", "f32/2")) + " | " +
              " | ".join(fmt(row[k], 2) + "x" for k in ("stored_over_f32/1", "stored_over_f32/2", "2_over_1/stored", "2_over_1/f32")) + " |")
    print(f"\nload (1-min average, before/after each run): median {out['load_1min']['median']}, "
          f"range {out['load_1min']['min']}–{out['load_1min']['max']}")
    print(f"wrote {os.path.relpath(args.out, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
