#!/usr/bin/env python3
"""Figures of the head-aware experiments (docs/heads.md).

    python3 experiments/plot_heads.py scores HEADS.h5 [--out FILE.png]
        heatmaps [layer x query head] of a `kvlab calibrate heads` file: the retrieval score (the
        paper's 0.1 threshold outlined), the exact long-context mass, and its two second-moment
        estimates (local-window moments, bulk moments) with their label agreement.
    python3 experiments/plot_heads.py ablation RESULTS.h5 [--out FILE.png]
        the causal test from a sweep whose tasks set `ablate_heads`: accuracy per task with the
        top-k retrieval heads masked vs k random heads (one point per draw, the pooled draws'
        95% Wilson interval) and the intact model.
    python3 experiments/plot_heads.py svd RESULTS.h5 [--out FILE.png]
        full cache vs head pooling vs SVD KV-head compression: KL, top-1 agreement and task scores.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import h5py
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def wilson(k: float, n: int, z: float = 1.96):
    """95% Wilson interval of k successes in n trials."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def heatmap(ax, m, title, vmax=None, cmap="viridis", outline=None):
    im = ax.imshow(m.T, aspect="auto", origin="lower", cmap=cmap, vmin=0, vmax=vmax)
    ax.set_xlabel("layer")
    ax.set_ylabel("query head")
    ax.set_title(title)
    ax.grid(False)
    if outline is not None:
        for l, h in zip(*np.nonzero(outline)):
            ax.add_patch(plt.Rectangle((l - 0.5, h - 0.5), 1, 1, fill=False, ec="red", lw=1.2))
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.02)


def plot_scores(path: str, out: str | None):
    with h5py.File(path, "r") as f:
        r = f["retrieval_score"][()]
        maps = {k: f[k][()] for k in f if k.startswith("lc_") and f[k].shape == r.shape}
        a = dict(f.attrs)
    L, H = r.shape
    above = np.nan_to_num(r) >= 0.1
    model = Path(str(a.get("model", ""))).name
    fig, axes = plt.subplots(2, 2, figsize=(12, 7))
    heatmap(axes[0, 0], r, f"retrieval score ({above.sum()} of {r.size} heads >= 0.1, {100 * above.mean():.1f}%; red)",
            vmax=max(0.1, float(np.nanmax(r))), cmap="magma", outline=above)
    heatmap(axes[0, 1], maps["lc_bulk_mass"], f"long-context: exact attention mass beyond sinks {a.get('lc_sinks')} + last {a.get('lc_window')}", vmax=1)
    agree_l = np.nanmean(maps["lc_agree_qada_local"])
    agree_b = np.nanmean(maps["lc_agree_qada_bulk"])
    heatmap(axes[1, 0], maps["lc_qada_bulk"], f"QAdA estimate: bulk-key moments (labels agree {100 * agree_b:.0f}%)", vmax=1)
    heatmap(axes[1, 1], maps["lc_qada_local"], f"variant: local-window moments (labels agree {100 * agree_l:.0f}%)", vmax=1)
    fig.suptitle(f"{model}: {a.get('prompts_used')} of {a.get('prompts_total')} needle prompts used, contexts "
                 f"{[int(c) for c in a.get('contexts', [])]}, haystack {a.get('haystack')}")
    fig.tight_layout()
    out = out or str(Path(path).with_suffix(".png"))
    fig.savefig(out)
    print("wrote", out)


def runs(path: str):
    """(task, context, ablation label, policy label, per-sample scores, scalars) per run."""
    rows = []
    with h5py.File(path, "r") as f:
        for name in sorted(f["runs"]):
            g = f["runs"][name]
            if str(g.attrs.get("status", "ok")) != "ok":
                continue
            key = json.loads(str(g.attrs["key"]))
            samples = {k: g["samples"][k][()] for k in g["samples"]}
            scalars = {k: float(v) for k, v in g.attrs.items() if isinstance(v, (float, np.floating))}
            rows.append(dict(task=str(g.attrs["task"]), context=int(g.attrs["context"]), ablation=key.get("ablate_heads", ""),
                             policy=str(g.attrs["label"]), kind=str(g.attrs["policy"]), samples=samples, scalars=scalars))
    return rows


def plot_ablation(path: str, out: str | None):
    rows = [r for r in runs(path) if r["ablation"]]
    groups = sorted({(r["task"], r["context"]) for r in rows})
    fig, axes = plt.subplots(1, len(groups), figsize=(max(5.2 * len(groups), 8), 4), squeeze=False)
    for ax, (task, ctx) in zip(axes[0], groups):
        sel = [r for r in rows if (r["task"], r["context"]) == (task, ctx)]
        by = {}
        for r in sel:
            s = r["ablation"].split(";")[0]
            m = re.match(r"(top|random):(\d+)", s)
            kind, k = (m.group(1), int(m.group(2))) if m else ("none", 0)
            by.setdefault((kind, k), []).append(r["samples"]["score"])
        ks = sorted({k for (kind, k) in by if kind != "none"})
        x = {k: i for i, k in enumerate(ks)}
        for (kind, k), draws in sorted(by.items()):
            if kind == "none":
                s = np.concatenate(draws)
                lo, hi = wilson(s.sum(), len(s))
                ax.axhspan(lo, hi, color="0.85", zorder=0)
                ax.axhline(s.mean(), color="0.3", ls="--", lw=1, label=f"intact model ({s.mean():.2f}, n={len(s)})")
                continue
            pooled = np.concatenate(draws)
            lo, hi = wilson(pooled.sum(), len(pooled))
            off = -0.15 if kind == "top" else 0.15
            colour = "C3" if kind == "top" else "C0"
            ax.errorbar(x[k] + off, pooled.mean(), yerr=[[max(pooled.mean() - lo, 0)], [max(hi - pooled.mean(), 0)]], fmt="o", color=colour,
                        capsize=4, label=(f"top-k retrieval heads" if kind == "top" else f"k random heads (draws pooled)") if k == ks[0] else None)
            if kind == "random":
                ax.scatter([x[k] + off + 0.08] * len(draws), [d.mean() for d in draws], s=12, color=colour, alpha=0.5,
                           label="one random draw" if k == ks[0] else None)
        ax.set_xticks(range(len(ks)))
        ax.set_xticklabels([f"k={k}" for k in ks])
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("score (95% Wilson interval)")
        ax.set_title(f"{task}, {ctx} tokens")
        ax.legend(loc="lower left", fontsize=8)
    fig.suptitle("causal test: masking heads while decoding (the reference's uniform-attention mask)")
    fig.tight_layout()
    out = out or str(Path(path).with_suffix(".ablation.png"))
    fig.savefig(out)
    print("wrote", out)


def plot_svd(path: str, out: str | None):
    rows = [r for r in runs(path) if not r["ablation"]]
    kinds = ["full", "head_pooling", "svd_heads"]
    names = {"full": "full cache", "head_pooling": "mean pooling", "svd_heads": "SVD"}
    panels = []
    for task in sorted({r["task"] for r in rows}):
        for metric in (["kl_mean", "top1_agreement"] if task == "fidelity" else ["score"]):
            panels.append((task, metric))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (task, metric) in zip(axes[0], panels):
        for i, kind in enumerate(kinds):
            rs = [r for r in rows if r["task"] == task and r["kind"] == kind]
            if not rs or metric not in rs[0]["samples"]:
                continue
            s = np.asarray(rs[0]["samples"][metric], dtype=float)
            m = float(np.nanmean(s))
            if metric == "kl_mean":
                err = 1.96 * np.nanstd(s, ddof=1) / math.sqrt(len(s)) if len(s) > 1 else 0
                yerr = [[min(err, m)], [err]]
            else:
                k = np.nansum(s) if metric == "score" else m * len(s)
                lo, hi = wilson(k, len(s)) if metric == "score" else (m, m)
                yerr = [[m - lo], [hi - m]]
            ax.bar(i, m, color=f"C{i}", yerr=yerr, capsize=4)
            ax.text(i, m, f"{m:.3g}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(kinds)))
        ax.set_xticklabels([names[k] for k in kinds], rotation=15)
        ax.set_title(f"{task}: {metric}")
    fig.suptitle("KV heads 3 -> 1 without retraining (stored KV bytes 1/3 of the full cache, measured)")
    fig.tight_layout()
    out = out or str(Path(path).with_suffix(".svd.png"))
    fig.savefig(out)
    print("wrote", out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["scores", "ablation", "svd"])
    p.add_argument("file")
    p.add_argument("--out")
    a = p.parse_args(argv)
    {"scores": plot_scores, "ablation": plot_ablation, "svd": plot_svd}[a.what](a.file, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
