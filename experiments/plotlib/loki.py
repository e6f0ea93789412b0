"""Loki calibration: cumulative explained variance of the post-RoPE keys vs PCA rank, per layer.

`kvlab calibrate` writes `explained_variance_ratio` [L, Hkv, d] (descending, each row sums to 1;
Sources/KVPolicies/LokiCalibration.swift). The reader is tolerant: it takes the dataset named
explained_variance_ratio anywhere in the file, else any dataset with "variance" in its name
(raw variances are normalised, ascending orders reversed, cumulative curves recognised), else
per-layer datasets (layer_<i>/...), and skips cleanly when none is found.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from .common import Saver, note

THRESHOLD = 0.9


def _candidates(f: h5py.File):
    found = []
    f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset)
                 and "variance" in name.lower() else None)

    def rank(name):
        base = name.split("/")[-1].lower()
        return (base != "explained_variance_ratio", "ratio" not in base, name.count("/"), name)
    return sorted(found, key=rank)


def _as_layers(arrays):
    """[L, Hkv, d] from one array ([L, Hkv, d], [L, d] or [d]) or per-layer arrays."""
    if len(arrays) == 1:
        a = arrays[0]
        if a.ndim == 3:
            return a
        if a.ndim == 2:
            return a[:, None, :]
        if a.ndim == 1:
            return a[None, None, :]
        return a.reshape(a.shape[0], -1, a.shape[-1])
    parts = [a.reshape(-1, a.shape[-1]) for a in arrays]
    heads = min(p.shape[0] for p in parts)
    return np.stack([p[:heads] for p in parts])


def read_variance(path: Path):
    """(cumulative explained variance [L, Hkv, d], dataset name, attrs) or None."""
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        names = _candidates(f)
        if not names:
            return None
        best = names[0]
        # Per-layer layout: several datasets of the same base name under layer groups.
        base = best.split("/")[-1]
        same = [n for n in names if n.split("/")[-1] == base]
        if len(same) > 1 and all(re.search(r"\d+", n.rsplit("/", 1)[0]) for n in same):
            same.sort(key=lambda n: [int(x) for x in re.findall(r"\d+", n.rsplit("/", 1)[0])])
            arrays = [np.asarray(f[n][()], dtype=float) for n in same]
            where = f"{len(same)} datasets '{base}' (one per layer)"
        else:
            arrays = [np.asarray(f[best][()], dtype=float)]
            where = best
    v = _as_layers(arrays)
    v = np.where(np.isfinite(v), v, 0.0)
    mono_up = np.all(np.diff(v, axis=-1) >= -1e-6)
    if mono_up and np.allclose(v[..., -1], 1.0, atol=2e-2):
        return v, where, attrs                          # already cumulative
    v = np.clip(v, 0, None)
    if mono_up and v.shape[-1] > 1 and np.any(np.diff(v, axis=-1) > 1e-9):
        v = v[..., ::-1]                                # ascending eigenvalues (LAPACK order)
    total = v.sum(axis=-1, keepdims=True)
    v = np.divide(v, total, out=np.zeros_like(v), where=total > 0)
    return np.cumsum(v, axis=-1), where, attrs


def plot_loki(path: Path, saver: Saver):
    if not path.exists():
        note(f"Loki calibration '{path}' does not exist: loki_variance skipped")
        return
    try:
        got = read_variance(path)
    except OSError as e:
        note(f"Loki calibration '{path}' is not readable HDF5 ({e}): loki_variance skipped")
        return
    if got is None:
        note(f"'{path}' has no dataset with 'variance' in its name: loki_variance skipped")
        return
    cum, where, attrs = got
    layers, kv_heads, d = cum.shape
    mean = cum.mean(axis=1)                             # [L, d]: mean over KV heads
    ranks = np.arange(1, d + 1)
    need = np.array([int(np.argmax(row >= THRESHOLD - 1e-9)) + 1 if row[-1] >= THRESHOLD - 1e-9 else d
                     for row in mean])
    need_heads = np.array([[int(np.argmax(c >= THRESHOLD - 1e-9)) + 1 for c in layer] for layer in cum])

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12.5, 4.6), gridspec_kw={"width_ratios": [1.55, 1]})
    cmap = plt.get_cmap("viridis")
    norm = Normalize(0, max(layers - 1, 1))
    for layer in range(layers):
        ax.plot(np.concatenate([[0], ranks]), np.concatenate([[0], mean[layer]]), color=cmap(norm(layer)),
                lw=1.4, alpha=0.9)
    ax.axhline(THRESHOLD, color="#d62728", ls="--", lw=1.1)
    ax.text(d * 0.985, THRESHOLD - 0.015, f"{THRESHOLD:.0%} explained", color="#d62728", ha="right", va="top",
            fontsize=8.5)
    for frac in (1 / 8, 1 / 4, 1 / 2):                 # Loki's default rank sweep (r/d)
        ax.axvline(d * frac, color="0.6", ls=":", lw=0.9)
        ax.text(d * frac, 0.02, f" r = d/{int(round(1 / frac))}", rotation=90, fontsize=7.5, color="0.4",
                va="bottom", ha="right")
    ax.set_xlim(0, d)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"PCA rank r (of head dim d = {d})")
    ax.set_ylabel("cumulative explained variance of keys")
    ax.set_title(f"explained variance per layer (mean over {kv_heads} KV head{'s' if kv_heads > 1 else ''})",
                 loc="left")
    sm = ScalarMappable(norm=norm, cmap=cmap)
    cb = fig.colorbar(sm, ax=ax, pad=0.02, fraction=0.05)
    cb.set_label("layer")
    if layers <= 12:
        cb.set_ticks(range(layers))

    x = np.arange(layers)
    if kv_heads > 1:
        lo, hi = need_heads.min(axis=1), need_heads.max(axis=1)
        bx.fill_between(x, lo, hi, color="#1f77b4", alpha=0.18, lw=0, label="range over KV heads")
    bx.plot(x, need, marker="o", color="#1f77b4", lw=1.5, ms=4.5, label="from the head-mean curve")
    bx.set_xlabel("layer")
    bx.set_ylabel(f"rank for {THRESHOLD:.0%} explained variance")
    bx.set_ylim(0, d * 1.04)
    sec = bx.secondary_yaxis("right", functions=(lambda r: r / d, lambda f: f * d))
    sec.set_ylabel("as a fraction of d")
    bx.set_title(f"rank needed for {THRESHOLD:.0%}", loc="left")
    if layers <= 16:
        bx.set_xticks(x)
    bx.legend(loc="upper left", frameon=False, fontsize=8)
    info = [f"{path.name}", f"dataset: {where}"]
    for key in ("model", "tokens", "source"):
        if key in attrs:
            info.append(f"{key}: {attrs[key]}")
    fig.suptitle("Loki calibration: how low-rank are the keys?", fontsize=12)
    fig.text(0.5, -0.01, " · ".join(str(i) for i in info), ha="center", va="top", fontsize=7.5, color="0.4")
    fig.tight_layout()
    saver.save(fig, "loki_variance")
