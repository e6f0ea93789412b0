#!/usr/bin/env python3
"""Draw the premise probes written by `kvlab probe` (docs/probes.md).

    python3 experiments/plot_probes.py PROBES.h5 [--out FILE.png]

Three panels, one point per layer (mean over heads; the band spans the heads):
  key rank      directions explaining 90% of the post-RoPE key variance, as a fraction of d
                (Loki's premise: the paper reports about 1/4 of d for Llama-class models)
  layer cosine  mean per-token cosine between layer l and l+1, keys and values
                (MiniCache's premise: high similarity from the middle layers on)
  sparsity      attention mass held by the top 1/8 (and 1/32) of the visible keys
                (Quest's and oracle top-k's premise: a few keys hold most of the mass)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("probes", help="HDF5 file written by `kvlab probe`")
    p.add_argument("--out", help="PNG path (default: <probes>.png)")
    a = p.parse_args(argv)
    with h5py.File(a.probes, "r") as f:
        rank = f["key_rank90"][()].astype(float)                 # [L, Hkv]
        d = f["key_variance_ratio"].shape[-1]
        cos_k, cos_v = f["layer_cos_k"][()], f["layer_cos_v"][()]  # [L-1, Hkv]
        top = f["attention_top_mass"][()]                          # [L, H, F]
        fr = list(f["attention_top_mass"].attrs["fractions"])
        # Quest's page bound (files from before it was measured have neither dataset)
        quest = f["attention_quest_mass"][()] if "attention_quest_mass" in f else None
        pages = f["attention_page_oracle_mass"][()] if "attention_page_oracle_mass" in f else None
        page_size = int(f["attention_quest_mass"].attrs["page_size"]) if quest is not None else 0
        model = f.attrs.get("model", "")
        text = f.attrs.get("text", "")
        tokens = int(f.attrs.get("tokens", 0))
    L = rank.shape[0]
    fig, ax = plt.subplots(1, 4 if quest is not None else 3, figsize=(20 if quest is not None else 15, 4.2))
    x = np.arange(L)

    def band(axis, xs, v, label, color):
        axis.plot(xs, v.mean(1), "o-", color=color, label=label, ms=3)
        axis.fill_between(xs, v.min(1), v.max(1), color=color, alpha=0.2)

    band(ax[0], x, rank / d, "rank@90% / d", "C0")
    ax[0].axhline(0.25, ls="--", color="gray", lw=1)
    ax[0].text(0, 0.26, "Loki paper: ~1/4 of d", color="gray", fontsize=8)
    ax[0].set(xlabel="layer", ylabel="fraction of head dim", title=f"Key rank for 90% variance (d={d})", ylim=(0, 1))
    xs = np.arange(L - 1) + 0.5
    band(ax[1], xs, cos_k, "keys", "C1")
    band(ax[1], xs, cos_v, "values", "C2")
    ax[1].axhline(0, color="gray", lw=0.5)
    ax[1].set(xlabel="layer pair (l, l+1)", ylabel="mean per-token cosine", title="Adjacent-layer similarity (MiniCache)",
              ylim=(-0.2, 1))
    ax[1].legend()
    for fi, color in ((fr.index(0.125), "C3"), (fr.index(0.03125), "C4")):
        band(ax[2], x, top[:, :, fi], f"top {fr[fi]:.3g} of keys", color)
    ax[2].set(xlabel="layer", ylabel="attention mass", title="Attention sparsity (Quest, top-k)", ylim=(0, 1.02))
    ax[2].legend()
    if quest is not None:
        fi = fr.index(0.125)
        band(ax[3], x, top[:, :, fi], "top 1/8 of keys (oracle top-k)", "C3")
        band(ax[3], x, pages[:, :, fi], f"best pages of {page_size} (page oracle)", "C5")
        band(ax[3], x, quest[:, :, fi], "Quest's pages (bound q+.M + q-.m)", "C6")
        ax[3].set(xlabel="layer", ylabel="attention mass", title="Budget 1/8: tokens vs pages vs Quest's bound", ylim=(0, 1.02))
        ax[3].legend(fontsize=8)
    fig.suptitle(f"{Path(str(model)).name}: premise probes on {tokens} tokens of {str(text).split(' (')[0]}", fontsize=10)
    fig.tight_layout()
    out = a.out or str(Path(a.probes).with_suffix(".png"))
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
