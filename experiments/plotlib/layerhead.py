"""Per-layer x head heatmaps (attention recall, kept fraction, output error) of a few runs."""

from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .common import Saver, fmt_tokens, pick_runs, short_label

# name -> (title, colour map, fixed range or None, head axis when the grid is per KV head)
METRICS = {
    "attention_recall": ("attention recall (mass on kept keys)", "viridis", (0.0, 1.0)),
    "kept_fraction": ("bytes each layer's own store holds (fraction of the full cache)", "viridis", (0.0, 1.0)),
    "attn_output_rel_error": ("relative error of attention output", "magma_r", None),
}


def _head_axis(res, model: str, metric: str, heads: int) -> str:
    cfg = res.model_config(model)
    q, kv = cfg.get("heads"), cfg.get("kvHeads", cfg.get("kv_heads"))
    if kv is not None and heads == kv and q != kv:
        return "KV head"
    if q is not None and heads == q:
        return "query head"
    return "KV head" if metric == "kept_fraction" else "head"


def plot_layer_heads(res, ok: pd.DataFrame, saver: Saver, max_runs: int = 8, all_runs: bool = False):
    groups = list(ok.groupby(["model", "task", "context"], sort=False))
    models = list(dict.fromkeys(ok["model"]))
    for (model, task, ctx), df in groups:
        runs = df if all_runs else pick_runs(df, max_runs)
        grids = {r: res.layer_head(r) for r in runs["run"]}
        names = []
        for g in grids.values():
            names += [n for n in g if n not in names]
        for metric in names:
            have = [(row, grids[row["run"]][metric]) for _, row in runs.iterrows() if metric in grids[row["run"]]]
            # A metric that is the same everywhere (e.g. kept_fraction of uniform evictions) still
            # draws: the heatmap then says "uniform" at a glance.
            if not have:
                continue
            stem = f"layer_head_{metric}_{task}_{ctx}" + (f"_{model}" if len(models) > 1 else "")
            saver.save(_figure(res, model, task, ctx, metric, have), stem)


def panel_title(row, mean, width_inches, fontsize=8.5) -> str:
    """A panel's title wrapped to the panel's width, so that the long labels of neighbouring
    panels (KIVI's bits, group size and residual) never run into each other."""
    chars = max(12, int(width_inches * 72 / (fontsize * 0.62)))
    label = short_label(row).replace(",", ", ")
    lines = textwrap.wrap(label, width=chars, break_long_words=True, break_on_hyphens=False)
    return "\n".join(lines + [f"run {row['run']} · mean {mean:.3f}"])


def _figure(res, model, task, ctx, metric, have):
    title, cmap, rng = METRICS.get(metric, (metric.replace("_", " "), "viridis", None))
    n = len(have)
    ncol = min(n, 4)
    nrow = math.ceil(n / ncol)
    layers, heads = have[0][1].shape
    cell = 0.32 if max(layers, heads) <= 16 else 0.09
    pw = float(np.clip(0.9 + cell * heads, 2.2, 4.0))
    ph = float(np.clip(0.8 + cell * layers, 1.8, 3.8))
    fig, axes = plt.subplots(nrow, ncol, figsize=(pw * ncol + 1.4, ph * nrow + 1.0), squeeze=False)
    values = np.concatenate([a.ravel() for _, a in have])
    values = values[np.isfinite(values)]
    if rng is None:
        rng = (0.0, float(values.max()) if values.size and values.max() > 0 else 1.0)
    im = None
    annotate = layers * heads <= 64
    head_axis = _head_axis(res, model, metric, heads)
    for k, (row, a) in enumerate(have):
        ax = axes[k // ncol][k % ncol]
        im = ax.imshow(np.ma.masked_invalid(a), cmap=cmap, vmin=rng[0], vmax=rng[1], aspect="auto",
                       interpolation="nearest")
        ax.grid(False)
        for sp in ax.spines.values():
            sp.set_visible(False)
        if annotate:
            for i in range(a.shape[0]):
                for j in range(a.shape[1]):
                    if np.isfinite(a[i, j]):
                        rel = (a[i, j] - rng[0]) / max(rng[1] - rng[0], 1e-12)
                        light = rel > 0.6 if cmap == "viridis" else rel < 0.45
                        ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=7,
                                color="black" if light else "white")
        step_h = max(1, a.shape[1] // 8)
        step_l = max(1, a.shape[0] // 8)
        ax.set_xticks(range(0, a.shape[1], step_h))
        ax.set_yticks(range(0, a.shape[0], step_l))
        ax.tick_params(length=0, labelsize=8)
        ax.set_xlabel(head_axis, fontsize=8.5)
        if k % ncol == 0:
            ax.set_ylabel("layer", fontsize=8.5)
        mean = np.nanmean(a)
        ax.set_title(panel_title(row, mean, pw * 0.8), fontsize=8.5)
    for k in range(n, nrow * ncol):
        axes[k // ncol][k % ncol].set_axis_off()
    fig.suptitle(f"{title} per layer x head · {task}, context {fmt_tokens(ctx)} (model {model})",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    cax = fig.add_axes([0.935, 0.15, 0.014, 0.65])
    fig.colorbar(im, cax=cax).set_label(metric)
    return fig
