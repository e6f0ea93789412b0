"""Memory/accuracy trade-off: score vs KV bytes stored, and score vs KV bytes read per step."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter

from .common import FULL, SCORE_LABELS, Saver, Styles, fmt_tokens, note

PANELS = [
    # (column, x label, top-axis absolute column, top label, panel title)
    ("memory_fraction", "KV cache stored, payload + metadata (fraction of full cache)", "kv_bytes_total_full",
     "KV + metadata stored", "memory: bytes stored (payload + metadata)"),
    ("read_fraction", "KV bytes read per decode step (fraction of full cache)", "full_read", "read per step",
     "traffic: bytes read per decode step"),
]
# Files written before memory_fraction existed: the payload alone.
PAYLOAD_PANEL = ("compression", "KV cache stored, payload only (fraction of full cache)", "kv_bytes_full", "KV stored",
                 "memory: bytes stored (payload only)")


def _aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds (and duplicate runs) of each policy point. Error bars: the run's stored 95%
    interval (score_lo, score_hi; over several runs of a point, the span of their intervals), or
    for files without intervals the standard deviation over seeds."""
    keys = ["line", "policy", "label", "budget", "budget_value"]
    num = [c for c in ("score", "compression", "memory_fraction", "read_fraction", "kv_bytes_full",
                       "kv_bytes_total_full", "kv_bytes_stored", "kv_bytes_read_per_step", "full_read") if c in df]
    g = df.groupby(keys, dropna=False, sort=False)
    out = g[num].mean()
    out["score_sd"] = g["score"].std()
    out["n"] = g["score"].count()
    if {"score_lo", "score_hi"} <= set(df.columns):
        out["score_lo"] = g["score_lo"].min()
        out["score_hi"] = g["score_hi"].max()
    if "score_n" in df:
        out["score_n"] = g["score_n"].sum()
    return out.reset_index()


def _perplexity_scores(df: pd.DataFrame) -> pd.DataFrame:
    """Perplexity on a log scale: -log(PPL / PPL_full), what KVLab's perplexity score is (files from
    before it was, whose score was -(PPL - PPL_full), are converted from their ppl columns and lose
    their intervals)."""
    if not {"ppl", "ppl_full"} <= set(df.columns):
        return df
    df = df.copy()
    rows = df["task"] == "perplexity"
    if "score_n" not in df or df.loc[rows, "score_n"].isna().all():
        df.loc[rows, "score"] = -np.log(df.loc[rows, "ppl"] / df.loc[rows, "ppl_full"])
        for c in ("score_lo", "score_hi"):
            if c in df:
                df.loc[rows, c] = np.nan
    return df


def _pareto(x, y):
    """Indices of the points no other point beats (less or equal x and higher y)."""
    order = sorted(range(len(x)), key=lambda i: (x[i], -y[i]))
    front, best = [], -np.inf
    for i in order:
        if y[i] > best + 1e-12:
            front.append(i)
            best = y[i]
    return front


def _fraction_axis(ax, xs):
    xs = np.asarray([v for v in xs if np.isfinite(v) and v > 0])
    if xs.size == 0:
        return
    lo, hi = xs.min(), max(xs.max(), 1.0)
    if hi / lo >= 8:
        ax.set_xscale("log", base=2)
        left, right = lo / 1.35, hi * 1.35
        ax.set_xticks([2.0 ** k for k in range(int(np.ceil(np.log2(left))), int(np.floor(np.log2(right))) + 1)])
        ax.set_xlim(left, right)
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        left = min(lo, hi * 0.5)
        pad = (hi - left) * 0.08
        ax.set_xlim(max(0.0, left - pad), hi + pad)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * 100:.3g}%"))


def _bytes_axis(ax, full_bytes, what):
    """A top axis in KiB/MiB/GiB: x fraction times the full cache's bytes."""
    if not np.isfinite(full_bytes) or full_bytes <= 0:
        return
    unit, size = next(((u, s) for u, s in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10))
                       if full_bytes >= s), ("B", 1))
    scale = full_bytes / size
    top = ax.secondary_xaxis("top", functions=(lambda v: v * scale, lambda v: v / scale))
    top.set_xlabel(f"{what} ({unit}; full cache = {scale:.4g} {unit})", fontsize=8.5, color="0.35")
    top.tick_params(labelsize=8, colors="0.35")
    if ax.get_xscale() == "log":
        top.set_xscale("log", base=2)
    top.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.4g}"))
    top.xaxis.set_minor_formatter(NullFormatter())


def _with_full_read(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `full_read` (the full cache's bytes read per step) and derives `read_fraction`
    from kv_bytes_read_per_step when the column is missing."""
    df = df.copy()
    if "kv_bytes_read_per_step" not in df:
        return df
    full = (df[df["policy"] == FULL].groupby(["model", "task", "context"])["kv_bytes_read_per_step"].mean()
            .rename("full_read"))
    df = df.join(full, on=["model", "task", "context"])
    if "read_fraction" not in df or df["read_fraction"].isna().all():
        df["read_fraction"] = df["kv_bytes_read_per_step"] / df["full_read"]
    return df


def plot_tradeoffs(df: pd.DataFrame, styles: Styles, saver: Saver, annotate: str = "auto"):
    if "score" not in df or df["score"].notna().sum() == 0:
        note("no 'score' column with values: trade-off figures skipped")
        return
    df = _with_full_read(_perplexity_scores(df[df["score"].notna()]))
    panels = list(PANELS)
    if "memory_fraction" not in df or df["memory_fraction"].isna().all():
        panels[0] = PAYLOAD_PANEL
        if "compression" in df and df["compression"].notna().any():
            note("no memory_fraction column (an older results file): the memory axis shows the payload only, "
                 "without metadata (Quest page bounds, Loki bases, MiniCache row index)")
    panels = [p for p in panels if p[0] in df and df[p[0]].notna().any()]
    if not panels:
        note("no 'compression' or 'read_fraction' column: trade-off figures skipped")
        return
    models = list(dict.fromkeys(df["model"]))
    for model in models:
        for task in dict.fromkeys(df[df["model"] == model]["task"]):
            sub = df[(df["model"] == model) & (df["task"] == task)]
            stem = f"tradeoff_{task}" + (f"_{model}" if len(models) > 1 else "")
            fig = _figure(sub, model, task, panels, styles, annotate)
            saver.save(fig, stem)


def _score_limits(ax, ys):
    """Y range around the data (the full-cache line included), clamped to [0, 1] for
    accuracy-like scores; at least a 0.2 window so flat results do not look dramatic."""
    ys = np.asarray([y for y in ys if np.isfinite(y)])
    if ys.size == 0:
        return
    lo, hi = ys.min(), ys.max()
    unit = lo >= -1e-9 and hi <= 1 + 1e-9
    span = max(hi - lo, 0.2 if unit else abs(hi) * 0.1 + 1e-9)
    mid = (lo + hi) / 2
    a, b = mid - span / 2, mid + span / 2
    pad = span * 0.1
    a, b = a - pad, b + pad
    if unit:
        if a < -0.03:
            b, a = min(1.03, b + (-0.03 - a)), -0.03
        if b > 1.03:
            a, b = max(-0.03, a - (b - 1.03)), 1.03
    ax.set_ylim(a, b)


def _place_labels(ax, items, fontsize=7):
    """Budget labels next to points, skipping any that would overlap a label or a point
    (greedy, in display pixels)."""
    fig = ax.figure                      # limits are fixed and the layout done: transData is final
    to_px = ax.transData.transform
    points = [to_px((x, y)) for x, y, _, _ in items]
    taken = []
    char_w, h = fontsize * 0.62 * fig.dpi / 72, fontsize * 1.25 * fig.dpi / 72
    placed = 0
    for (x, y, text, color), (px, py) in zip(items, points):
        w = char_w * len(text)
        for dx, dy in ((5, 4), (5, -4 - h), (-5 - w, 4), (-5 - w, -4 - h), (-w / 2, 7), (-w / 2, -7 - h)):
            box = (px + dx, py + dy, px + dx + w, py + dy + h)
            m = 3
            x0, y0, x1, y1 = ax.bbox.extents
            if box[0] < x0 + 2 or box[2] > x1 - 2 or box[1] < y0 + 2 or box[3] > y1 - 2:
                continue
            if any(not (box[2] + m < b[0] or box[0] - m > b[2] or box[3] + m < b[1] or box[1] - m > b[3])
                   for b in taken):
                continue
            if any(box[0] - 3 < qx < box[2] + 3 and box[1] - 3 < qy < box[3] + 3 for qx, qy in points):
                continue
            dpi = fig.dpi / 72
            ax.annotate(text, (x, y), xytext=(dx / dpi, dy / dpi), textcoords="offset points", fontsize=fontsize,
                        color=color, ha="left", va="bottom", zorder=4, annotation_clip=False)
            taken.append(box)
            placed += 1
            break
    return placed


def _figure(sub, model, task, panels, styles, annotate):
    contexts = sorted(dict.fromkeys(sub["context"]))
    nrow, ncol = len(contexts), len(panels)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.4 * ncol, 3.9 * nrow + 0.6), squeeze=False)
    ylabel = SCORE_LABELS.get(task, "score") + "\n(higher is better)"
    legend = {}
    labels = []                          # (ax, items) placed once the layout is final
    for r, ctx in enumerate(contexts):
        pts = _aggregate(sub[sub["context"] == ctx])
        for c, (col, xlabel, abs_col, abs_label, title) in enumerate(panels):
            ax = axes[r][c]
            have = pts[pts[col].notna()] if col in pts else pts.iloc[0:0]
            if have.empty:
                ax.text(0.5, 0.5, f"no '{col}' values", ha="center", va="center", transform=ax.transAxes,
                        color="0.4")
                ax.set_axis_off()
                continue
            full = have[have["policy"] == FULL]
            rest = have[have["policy"] != FULL]
            items = []
            for line, g in rest.groupby("line", sort=False):
                g = g.sort_values([col, "budget_value"])
                color, marker = styles.color(line), styles.marker(line)
                h = ax.plot(g[col], g["score"], marker=marker, color=color, lw=1.6, ms=6.5,
                            mec="white", mew=0.6, zorder=3, label=line)[0]
                if "score_lo" in g and g["score_lo"].notna().any():
                    lo = (g["score"] - g["score_lo"]).clip(lower=0).fillna(0)
                    hi = (g["score_hi"] - g["score"]).clip(lower=0).fillna(0)
                    ax.errorbar(g[col], g["score"], yerr=[lo, hi], fmt="none",
                                ecolor=color, elinewidth=0.9, capsize=2, zorder=2)
                elif g["n"].max() > 1:
                    ax.errorbar(g[col], g["score"], yerr=g["score_sd"].fillna(0), fmt="none",
                                ecolor=color, elinewidth=0.9, capsize=2, zorder=2)
                legend.setdefault(line, h)
                items += [(x, y, b, color) for x, y, b in zip(g[col], g["score"], g["budget"]) if b]
            if not full.empty:
                ax.axhline(full["score"].mean(), color="0.3", ls=":", lw=1, zorder=1)
                h = ax.plot(full[col], full["score"], marker="*", ms=15, color="black", mec="white",
                            mew=0.6, ls="none", zorder=5, label="full cache")[0]
                legend.setdefault("full cache", h)
            xs, ys = list(have[col]), list(have["score"])
            if "score_lo" in have:
                ys_range = ys + [v for v in list(have["score_lo"]) + list(have["score_hi"]) if np.isfinite(v)]
            else:
                ys_range = ys
            if not full.empty and have["score"].between(0, 1).all() and full["score"].mean() < 0.05:
                ax.text(0.5, 0.55, "the full cache scores ~0 here: nothing to compare\n"
                        "(check the model and the task setup)",
                        transform=ax.transAxes, ha="center", va="center", fontsize=9, color="#b03030",
                        bbox=dict(boxstyle="round,pad=0.4", fc="white", ec="#b03030", alpha=0.9))
            _fraction_axis(ax, xs)
            _score_limits(ax, ys_range)
            # Pareto front over every point of the panel (full cache included): the best score
            # reachable at each budget, as a dashed staircase to the right edge.
            front = _pareto(xs, ys)
            if len(front) >= 2 or (len(front) == 1 and len(xs) > 1):
                fx = [xs[i] for i in front] + [ax.get_xlim()[1]]
                fy = [ys[i] for i in front] + [ys[front[-1]]]
                h = ax.plot(fx, fy, ls=(0, (4, 2.5)), lw=1.4, color="0.35", zorder=2.5, drawstyle="steps-post",
                            label="Pareto front")[0]
                legend.setdefault("Pareto front", h)
                ax.plot(fx[:-1], fy[:-1], ls="none", marker="o", ms=12, mfc="none", mec="0.45", mew=1.0,
                        zorder=2.5)
            _bytes_axis(ax, have[abs_col].mean() if abs_col in have else np.nan, abs_label)
            ax.set_xlabel(xlabel)
            if c == 0:
                ax.set_ylabel(ylabel)
            ctx_text = f"context {fmt_tokens(ctx)} tokens" if ctx else ""
            ax.set_title(" · ".join(t for t in (title, ctx_text) if t), pad=6, loc="left")
            if annotate != "none" and items:
                labels.append((ax, items))
    fig.suptitle(f"{task}: score vs KV-cache budget  (model {model})", fontsize=12, y=1.0)
    fig.text(1.0, 0.12, _interval_note(sub), fontsize=7.5, color="0.4", ha="left", va="bottom")
    names = sorted(legend, key=lambda n: (n in ("full cache", "Pareto front"), n == "Pareto front", n))
    fig.legend([legend[n] for n in names], names, loc="upper left", bbox_to_anchor=(1.0, 0.93),
               frameon=False, title="policy", alignment="left")
    fig.tight_layout()
    placed = sum(_place_labels(ax, items) if annotate == "auto" else _place_all(ax, items) for ax, items in labels)
    if placed:
        fig.text(1.0, 0.02, "point labels: budget\n(% of prompt kept,\nor tokens)", fontsize=7.5,
                 color="0.4", ha="left", va="bottom")
    return fig


def _interval_note(sub) -> str:
    """What the error bars are, with the sample counts behind them."""
    if "score_n" in sub and sub["score_n"].notna().any():
        ns = sorted({int(n) for n in sub["score_n"].dropna()})
        n = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]}"
        return f"error bars: 95% interval\nover the samples ({n})\nWilson for accuracies,\nStudent's t otherwise"
    return "error bars: standard\ndeviation over seeds"


def _place_all(ax, items):
    for x, y, text, color in items:
        ax.annotate(text, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7, color=color, zorder=4)
    return len(items)
