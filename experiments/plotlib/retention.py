"""Retention maps: which original positions each layer and KV head kept."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap

from .common import Saver, fmt_tokens, note, pick_runs, short_label

MAX_SAMPLES = 3
MAX_COLUMNS = 700        # position bins per panel (about one per pixel)


def plot_retention(res, ok: pd.DataFrame, saver: Saver, max_runs: int = 8, all_runs: bool = False):
    have = set(res.runs_with("retention"))
    if not have:
        return
    cand = ok[ok["run"].isin(have)]
    if cand.empty:
        note("retention maps exist only for failed runs: retention figures skipped")
        return
    if not all_runs:              # by default the longest context of each task: the most telling
        longest = cand.groupby(["model", "task"])["context"].transform("max")
        cand = cand[cand["context"] == longest]
    for _, df in cand.groupby(["model", "task", "context"], sort=False):
        runs = df if all_runs else pick_runs(df, max_runs)
        for _, row in runs.iterrows():
            ret = res.retention(row["run"])
            if ret is None or ret.size == 0:
                continue
            saver.save(_figure(res, row, ret), f"retention_{row['run']}")


def _figure(res, row, ret: np.ndarray):
    n_samples, layers, kv_heads, _ = ret.shape
    shown = min(n_samples, MAX_SAMPLES)
    samples = res.samples(row["run"])
    needle = samples.get("meta_needle_position")
    depth = samples.get("meta_depth")
    valid = ret[ret >= 0]
    length = int(max(valid.max() + 1 if valid.size else 1, row.get("context", 0) or 0))
    if "tokens_seen" in samples and np.isfinite(samples["tokens_seen"]).any():
        length = max(length, int(np.nanmax(samples["tokens_seen"])))
    rows = layers * kv_heads
    ph = float(np.clip(0.9 + 0.11 * rows, 1.8, 7.5))
    pw = 5.2 if shown > 1 else 8.0
    fig, axes = plt.subplots(2, shown, figsize=(pw * shown + 0.6, ph + 2.0), squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": [1, max(2.5, ph / 0.6)]})
    fig.get_layout_engine().set(h_pad=0.02, hspace=0.01)
    cmap = ListedColormap(["#f2f2f2", "#1f4e9c"])
    for s in range(shown):
        kept = np.zeros((rows, length), dtype=np.uint8)
        for layer in range(layers):
            for h in range(kv_heads):
                pos = ret[s, layer, h]
                pos = pos[(pos >= 0) & (pos < length)]
                kept[layer * kv_heads + h, pos] = 1
        top, ax = axes[0][s], axes[1][s]
        # More positions than pixels: bin them, a bin showing as kept when any position in it
        # is (thin features such as 4 sink tokens in a 32K context stay visible).
        shown_img = kept
        if length > MAX_COLUMNS:
            edges = np.linspace(0, length, MAX_COLUMNS + 1).astype(int)
            shown_img = np.maximum.reduceat(kept, edges[:-1], axis=1)
        ax.imshow(shown_img, cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest",
                  extent=(-0.5, length - 0.5, rows - 0.5, -0.5))
        ax.grid(False)
        for layer in range(1, layers):
            ax.axhline(layer * kv_heads - 0.5, color="white", lw=1.2)
        step = max(1, layers // 12)
        ax.set_yticks([layer * kv_heads + (kv_heads - 1) / 2 for layer in range(0, layers, step)],
                      [f"L{layer}" for layer in range(0, layers, step)] if s == 0 else [])
        ax.tick_params(axis="y", length=0)
        ax.set_xlabel("original token position")
        if s == 0:
            ax.set_ylabel(f"layer (each band: {kv_heads} KV head{'s' if kv_heads > 1 else ''})")
        frac = kept.mean(axis=0)
        top.fill_between(np.arange(length), frac, step="mid", color="#1f4e9c", alpha=0.35, lw=0)
        top.plot(np.arange(length), frac, drawstyle="steps-mid", color="#1f4e9c", lw=0.8)
        top.set_xlim(-0.5, length - 0.5)
        top.set_ylim(0, 1.05)
        top.set_xticklabels([])
        top.set_yticks([0, 1])
        if s == 0:
            top.set_ylabel("share of\nheads", fontsize=8)
        title = f"sample {s}"
        if depth is not None and s < len(depth) and np.isfinite(depth[s]):
            title += f" · needle depth {depth[s] * 100:.3g}%"
        top.set_title(title, fontsize=9, loc="left")
        if needle is not None and s < len(needle) and np.isfinite(needle[s]):
            for a in (top, ax):
                a.axvline(needle[s], color="#d62728", lw=1.1, ls="--", alpha=0.9)
            top.text(needle[s], 0.55, " needle", color="#d62728", fontsize=7.5, va="center", ha="left",
                     transform=top.get_xaxis_transform())
        per_head = (ret[s] >= 0).sum(axis=-1).mean()
        top.set_title(f"{per_head:.0f} kept per head (mean)", fontsize=8, loc="right", color="0.35")
    more = f" (first {shown} of {n_samples} samples)" if n_samples > shown else ""
    fig.suptitle(f"Kept positions: {short_label(row)} · {row['task']}, context "
                 f"{fmt_tokens(row['context'])} · run {row['run']}{more}  (blue = kept)", fontsize=10.5)
    return fig
