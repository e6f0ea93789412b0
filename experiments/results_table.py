#!/usr/bin/env python3
"""Markdown tables of KVLab results files: one row per policy point, one column per task point.

Each cell is the score with its 95% interval and sample count ("0.80 [0.49, 0.94] n=10"); the
memory and traffic columns are the measured fractions of the full cache (payload + metadata held
at the end; K/V + selection metadata read per decode step), taken from the first task point.
Perplexity cells show the pooled PPL and its ratio to the full cache's.

    python3 experiments/results_table.py results/real/families_1k.h5 [more.h5 ...] [--tasks passkey@1024,...]
        [--extra kl_mean,top1_agreement]     # more summary columns (first task point's value)

The README's tables are this script's output (docs/real-model.md says which file gave which).
"""
import argparse
import math
import sys

import h5py


def column(summary, name):
    if name not in summary:
        return None
    values = summary[name][()]
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def read_rows(path, extra=()):
    with h5py.File(path, "r") as f:
        s = f["summary"]
        names = list(extra) + ["label", "policy", "task", "context", "status", "score", "score_lo", "score_hi", "score_n",
                 "memory_fraction", "read_fraction", "ppl", "ppl_full", "budget_value", "budget_kind"]
        cols = {n: column(s, n) for n in names}
        n = len(cols["label"])
        return [{k: (v[i] if v is not None else None) for k, v in cols.items()} for i in range(n)]


def fmt(x, digits=2):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def cell(row):
    if row["status"] != "ok":
        return f"({row['status']})"
    if row["task"] == "perplexity" and row["ppl"] is not None and not math.isnan(row["ppl"]):
        ratio = row["ppl"] / row["ppl_full"] if row["ppl_full"] else float("nan")
        return f"{fmt(row['ppl'], 1)} ({ratio:.2f}x) n={int(row['score_n'])}"
    return f"{fmt(row['score'])} [{fmt(row['score_lo'])}, {fmt(row['score_hi'])}] n={int(row['score_n'])}"


def table(rows, tasks=None, extra=()):
    task_points = []
    for r in rows:
        t = f"{r['task']}@{r['context']}"
        if t not in task_points:
            task_points.append(t)
    if tasks:
        task_points = [t for t in task_points if t in tasks]
    policies = []
    for r in rows:
        if r["label"] not in policies:
            policies.append(r["label"])
    by = {(r["label"], f"{r['task']}@{r['context']}"): r for r in rows}
    out = ["| policy | memory | read/step | " + "".join(f"{e} | " for e in extra) + " | ".join(task_points) + " |",
           "|---|---|---|" + "---|" * (len(extra) + len(task_points))]
    for p in policies:
        first = next((by[(p, t)] for t in task_points if (p, t) in by), None)
        if first is None:
            continue
        cells = [cell(by[(p, t)]) if (p, t) in by else "" for t in task_points]
        extras = "".join(f"{fmt(first[e], 3)} | " for e in extra)
        out.append(f"| `{p}` | {fmt(first['memory_fraction'], 3)} | {fmt(first['read_fraction'], 3)} | " + extras + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--tasks", help="comma-separated task points to show, e.g. passkey@1024,niah_single@1024")
    ap.add_argument("--extra", help="comma-separated summary metrics to add as columns, e.g. kl_mean,top1_agreement")
    a = ap.parse_args()
    tasks = a.tasks.split(",") if a.tasks else None
    extra = a.extra.split(",") if a.extra else []
    for path in a.files:
        try:
            rows = read_rows(path, extra)
        except (OSError, KeyError) as e:
            sys.exit(f"{path}: not a KVLab results file ({e})")
        print(f"<!-- {path} -->")
        print(table(rows, tasks, extra))
        print()


if __name__ == "__main__":
    main()
