#!/usr/bin/env python3
"""Cost of the NaN/inf checks of the forward pass on the decoder benchmark (issue 16).

Runs `kvlab bench decoder --json` with the checks (what runs and generate use) and with
`--no-finite-checks`, alternating, ROUNDS times each (order swapped every round), and prints the
median tokens/s of each and the relative cost. The machine is shared and noisy: alternation and
medians are what make the two comparable.

    python3 scripts/robustness/finite_check_cost.py [--rounds 7] [--kvlab .build/release/kvlab] [-- extra bench args]
"""
import argparse, json, statistics, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=7)
ap.add_argument("--kvlab", default=".build/release/kvlab")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("extra", nargs="*", help="extra `kvlab bench decoder` arguments")
a = ap.parse_args()

runs = {True: [], False: []}
for r in range(a.rounds):
    for checks in ([True, False] if r % 2 == 0 else [False, True]):
        cmd = [a.kvlab, "bench", "decoder", "--json", "--threads", str(a.threads)] + a.extra + ([] if checks else ["--no-finite-checks"])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        j = json.loads(out.strip().splitlines()[-1])
        assert j["finite_checks"] == checks
        runs[checks].append(j)
        print(f"round {r + 1}: checks {'on ' if checks else 'off'} prefill {j['prefill_tok_s']:.1f} tok/s, decode " +
              ", ".join(f"{k}: {v:.2f}" for k, v in j["decode_tok_s"].items()), file=sys.stderr, flush=True)

def med(checks, key, sub=None):
    xs = [j[key][sub] if sub else j[key] for j in runs[checks]]
    return statistics.median(xs)

rows = [("prefill tok/s", "prefill_tok_s", None)] + [(f"decode tok/s at {c}", "decode_tok_s", c) for c in runs[True][0]["decode_tok_s"]]
print(f"{'metric':24} {'checks on':>10} {'checks off':>11} {'cost':>7}   (median of {a.rounds} alternating runs each)")
for name, key, sub in rows:
    on, off = med(True, key, sub), med(False, key, sub)
    print(f"{name:24} {on:10.2f} {off:11.2f} {100 * (off - on) / off:+6.2f}%")
scan = statistics.median(j["weights_finite_scan_s"] for j in runs[True] + runs[False])
print(f"weights NaN/inf scan: {scan * 1000:.1f} ms (median), model load {statistics.median(j['load_s'] for j in runs[True]):.2f} s")
