#!/usr/bin/env python3
"""Draw the standard KVLab figures from a results file (HDF5).

    python3 experiments/plot.py RESULTS.h5 [--out DIR] [--format png,svg]
                                [--loki CALIBRATION.h5] [--summary]

Draws whatever the file supports (docs/plots.md):
  tradeoff_<task>.png          score vs KV bytes stored, and vs KV bytes read per decode step
  needle_<policy>.png          depth x context heatmaps of needle/passkey scores
  layer_head_<metric>_<task>_<context>.png   per layer x head grids of a few informative runs
  retention_<run>.png          kept positions per layer and KV head (files with retention maps)
  loki_variance.png            cumulative explained variance of keys per layer (--loki)
and prints the files written. Failed runs (status != ok) are skipped with a note.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plotlib import common, layerhead, loki, needle, retention, tradeoff  # noqa: E402
from plotlib.results import load  # noqa: E402

SUMMARY_COLUMNS = ["run", "model", "task", "context", "seed", "label", "status", "score", "compression",
                   "read_fraction", "kv_bytes_stored", "kv_bytes_stored_peak", "kv_bytes_read_per_step",
                   "kl_mean", "top1_agreement", "attention_recall"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Draw the standard figures from a KVLab results file.")
    p.add_argument("results", nargs="?", help="results file (HDF5) written by `kvlab run`")
    p.add_argument("--out", help="output folder (default: <results dir>/<name>-plots/)")
    p.add_argument("--format", default="png", help="comma-separated formats, e.g. png,svg (default png)")
    p.add_argument("--loki", help="Loki calibration file (HDF5): draws loki_variance.png")
    p.add_argument("--summary", action="store_true", help="print the summary table (pandas)")
    p.add_argument("--annotate", choices=["auto", "all", "none"], default="auto",
                   help="budget labels next to trade-off points (auto: when a panel has few points)")
    p.add_argument("--max-runs", type=int, default=8,
                   help="layer x head and retention figures: draw all runs of a task/context when at most "
                        "this many, else the lowest budget of each policy (default 8)")
    p.add_argument("--all-runs", action="store_true",
                   help="layer x head and retention figures for every run")
    args = p.parse_args(argv)
    if not args.results and not args.loki:
        p.error("give a results file, --loki CALIBRATION.h5, or both")
    return args


def print_summary(res):
    import pandas as pd
    cols = [c for c in SUMMARY_COLUMNS if c in res.table]
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_rows", None,
                           "display.max_colwidth", 70, "display.float_format", "{:.4g}".format):
        print(res.table[cols].to_string(index=False))


def main(argv=None) -> int:
    args = parse_args(argv)
    formats = [f.strip().lstrip(".").lower() for f in args.format.split(",") if f.strip()]
    if not formats:
        formats = ["png"]

    res = None
    if args.results:
        path = Path(args.results)
        if not path.exists():
            print(f"error: no such file: {path}", file=sys.stderr)
            return 2
        try:
            res = load(path)
        except OSError as e:
            print(f"error: cannot read '{path}' as HDF5: {e}", file=sys.stderr)
            return 2
        out = Path(args.out) if args.out else path.parent / f"{path.stem}-plots"
    else:
        loki_path = Path(args.loki)
        out = Path(args.out) if args.out else loki_path.parent / f"{loki_path.stem}-plots"
    saver = common.Saver(out, formats)

    if res is not None:
        for n in res.notes:
            common.note(n)
        if args.summary:
            print_summary(res)
        failed = res.failed
        if len(failed):
            reasons = failed["status"].value_counts()
            detail = "; ".join(f"{n} x '{s}'" for s, n in reasons.head(3).items())
            more = f" (+{len(reasons) - 3} other messages)" if len(reasons) > 3 else ""
            common.note(f"skipping {len(failed)} failed run(s) (status != ok): {detail}{more}")
        ok = res.ok
        if ok.empty:
            common.note("no successful runs: nothing to plot from the results file")
        else:
            ok = common.add_lines(ok)
            styles = common.Styles(sorted(dict.fromkeys(ok["line"]),
                                          key=lambda l: (l.split(" (")[0] != common.FULL, l)))
            steps = [
                ("trade-off", lambda: tradeoff.plot_tradeoffs(ok, styles, saver, annotate=args.annotate)),
                ("needle", lambda: needle.plot_needles(res, ok, styles, saver)),
                ("layer x head", lambda: layerhead.plot_layer_heads(res, ok, saver, args.max_runs, args.all_runs)),
                ("retention", lambda: retention.plot_retention(res, ok, saver, args.max_runs, args.all_runs)),
            ]
            for name, step in steps:
                try:
                    step()
                except Exception as e:  # one broken figure must not cost the others
                    common.note(f"{name} figures failed: {type(e).__name__}: {e}")
    if args.loki:
        try:
            loki.plot_loki(Path(args.loki), saver)
        except Exception as e:
            common.note(f"Loki variance figure failed: {type(e).__name__}: {e}")

    if saver.written:
        print(f"wrote {len(saver.written)} file(s) to {saver.out}/:")
        for p in saver.written:
            print(f"  {p}")
    else:
        print("no figures written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
