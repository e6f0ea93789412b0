"""Needle-in-a-haystack heatmaps: score by needle depth (rows) and context length (columns)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .common import FULL, Saver, Styles, fmt_tokens, note, safe_name

# Tasks whose samples carry meta_depth (the needle's depth fraction in the haystack).
NEEDLE_TASKS = ("needle", "passkey", "niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery")
MAX_DEPTH_ROWS = 12


def _sample_table(res, df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in df.iterrows():
        s = res.samples(r["run"])
        depth, score = s.get("meta_depth"), s.get("score")
        if depth is None or score is None or len(depth) != len(score):
            continue
        for d, v in zip(depth, score):
            if np.isfinite(d) and np.isfinite(v):
                rows.append({"run": r["run"], "model": r["model"], "task": r["task"], "context": r["context"],
                             "line": r["line"], "policy": r["policy"], "label": r["label"],
                             "budget": r["budget"], "budget_value": r["budget_value"],
                             "depth": float(d), "score": float(v)})
    return pd.DataFrame(rows)


def _depth_bins(depths: np.ndarray):
    """Depth rows: the distinct sample depths when few, else ten equal bins over [0, 1]."""
    u = np.unique(np.round(depths, 3))
    if len(u) <= MAX_DEPTH_ROWS:
        return u, [f"{d * 100:.3g}%" for d in u], lambda d: np.round(d, 3)
    edges = np.linspace(0, 1, 11)
    centers = (edges[:-1] + edges[1:]) / 2
    return centers, [f"{a * 100:.0f}-{b * 100:.0f}%" for a, b in zip(edges[:-1], edges[1:])], \
        lambda d: centers[np.clip(np.digitize(d, edges[1:-1]), 0, 9)]


def plot_needles(res, ok: pd.DataFrame, styles: Styles, saver: Saver):
    cand = ok[ok["task"].isin(NEEDLE_TASKS)]
    if cand.empty:
        return
    table = _sample_table(res, cand)
    if table.empty:
        note("needle/passkey runs have no per-sample meta_depth and score: heatmaps skipped")
        return
    models = list(dict.fromkeys(table["model"]))
    for model in models:
        tm = table[table["model"] == model]
        ref = tm[tm["policy"] == FULL]
        kinds = sorted(dict.fromkeys(tm["policy"]), key=lambda k: (k != FULL, k))
        for kind in kinds:
            t = tm[tm["policy"] == kind]
            stem = f"needle_{kind}" + (f"_{model}" if len(models) > 1 else "")
            fig = _figure(t, ref if kind != FULL else ref.iloc[0:0], kind, model)
            saver.save(fig, safe_name(stem))


def _columns(t: pd.DataFrame, ref: pd.DataFrame):
    """(title, runs) per heatmap column: the full cache, then each variant by line and budget."""
    cols = [("full cache", ref)] if not ref.empty else []
    variants = (t[["label", "line", "budget", "budget_value"]].drop_duplicates("label")
                .sort_values(["line", "budget_value", "label"], na_position="last"))
    multi_line = variants["line"].nunique() > 1
    for _, v in variants.iterrows():
        extra = v["line"].split(" (", 1)[1].rstrip(")") if multi_line and " (" in v["line"] else ""
        b = v["budget"]
        title = ((f"budget {b} tokens" if b.isdigit() else f"budget {b}") if b[:1].isdigit() else b) \
            if b else v["label"]
        if extra:
            title += f"\n{extra}"
        cols.append((title, t[t["label"] == v["label"]]))
    return cols


def _figure(t: pd.DataFrame, ref: pd.DataFrame, kind: str, model: str):
    tasks = list(dict.fromkeys(t["task"]))
    cols = _columns(t, ref)
    both = pd.concat([t, ref])
    levels, level_names, to_level = _depth_bins(both["depth"].to_numpy())
    contexts_of = {task: sorted(dict.fromkeys(both[both["task"] == task]["context"])) for task in tasks}
    most = max(len(c) for c in contexts_of.values())
    ncol, nrow = len(cols), len(tasks)
    w = max(2.0, 0.9 + 0.5 * most)
    h = max(1.9, 0.9 + 0.3 * len(levels))
    fig, axes = plt.subplots(nrow, ncol, figsize=(w * ncol + 1.0, h * nrow + 1.0), squeeze=False)
    scores = both["score"]
    vmin, vmax = (0.0, 1.0) if scores.between(0, 1).all() else (scores.min(), scores.max())
    im = None
    for r, task in enumerate(tasks):
        contexts = contexts_of[task]
        for c, (title, frame) in enumerate(cols):
            ax = axes[r][c]
            f = frame[frame["task"] == task]
            grid = np.full((len(levels), len(contexts)), np.nan)
            if not f.empty:
                lv = to_level(f["depth"].to_numpy())
                for (d, ctx), g in f.assign(level=lv).groupby(["level", "context"]):
                    grid[int(np.argmin(np.abs(levels - d))), contexts.index(ctx)] = g["score"].mean()
            im = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=vmin, vmax=vmax, aspect="auto",
                           interpolation="nearest")
            ax.set_facecolor("0.88")
            ax.grid(False)
            for sp in ax.spines.values():
                sp.set_visible(False)
            if grid.size <= 160:
                for i in range(grid.shape[0]):
                    for j in range(grid.shape[1]):
                        if np.isfinite(grid[i, j]):
                            v = grid[i, j]
                            rel = (v - vmin) / max(vmax - vmin, 1e-12)
                            text = f"{v:.2f}".rstrip("0").rstrip(".") if vmax <= 1 else f"{v:.3g}"
                            ax.text(j, i, text, ha="center", va="center", fontsize=7.5,
                                    color="white" if rel < 0.2 or rel > 0.85 else "black")
            ax.set_xticks(range(len(contexts)), [fmt_tokens(x) for x in contexts])
            ax.set_yticks(range(len(levels)), level_names if c == 0 else [])
            ax.tick_params(length=0)
            ax.set_xlabel("context (tokens)", fontsize=8.5)
            if c == 0:
                ax.set_ylabel(f"{task}\nneedle depth")
            mean = np.nanmean(grid) if np.isfinite(grid).any() else np.nan
            head = title if r == 0 else ""
            ax.set_title((head + "\n" if head else "") + (f"mean {mean:.2f}" if np.isfinite(mean) else "not run"),
                         fontsize=9)
    fig.suptitle(f"Needle retrieval: {kind}  (model {model})\n"
                 f"mean score by needle depth (0% = start of the haystack) and context length; grey = not run",
                 fontsize=10.5)
    fig.tight_layout(rect=(0, 0, 1 - 0.9 / fig.get_figwidth(), 1))
    x0 = 1 - 0.75 / fig.get_figwidth()
    cax = fig.add_axes([x0, 0.15, 0.14 / fig.get_figwidth(), 0.62])
    fig.colorbar(im, cax=cax).set_label("score (1 = retrieved)")
    return fig
