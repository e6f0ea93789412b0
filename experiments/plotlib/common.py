"""Shared pieces of the figures: policy lines and budgets, colours, labels, saving."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .results import parse_params  # noqa: E402

plt.rcParams.update({
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.labelsize": 9.5,
    "legend.fontsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
})

FULL = "full"

# Task -> y label of its score (docs/tasks.md: every score is "higher is better").
SCORE_LABELS = {
    "fidelity": "top-1 agreement with full cache",
    "perplexity": "-log(PPL / PPL_full)  (0 = full cache)",
    "passkey": "passkey accuracy",
    "needle": "needle accuracy",
    "mqar": "MQAR accuracy",
    "niah_single": "NIAH accuracy",
    "niah_multikey": "NIAH accuracy",
    "niah_multivalue": "NIAH recall",
    "niah_multiquery": "NIAH recall",
    "variable_tracking": "variable tracking recall",
    "common_words": "common words recall",
}

_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p"]
_PALETTE = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("Dark2").colors)
# Fixed colour slots (tab10) and markers of the known policies, so a policy looks the same in
# every figure and every results file; other kinds (stacks, new policies) take the free slots.
_KNOWN = {"streaming_llm": (5, "P"), "h2o": (0, "o"), "snapkv": (3, "D"), "pyramidkv": (6, "h"),
          "tova": (4, "v"), "knorm": (8, "X"), "quest": (2, "^"), "loki": (1, "s"), "oracle_topk": (9, "<")}


def base_param(name: str) -> str:
    """A stack child's parameter without its "<i>." prefix."""
    return re.sub(r"^\d+\.", "", str(name))


def budget_text(kind, value) -> str:
    """A short label of a run's budget from its budget_kind / budget_value columns (the form the
    config wrote): 12.5% (keep, or 1 - compression_ratio), 256 (tokens), k=48, k 25%."""
    if not isinstance(kind, str) or not kind:
        return ""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return ""
    if not np.isfinite(x):
        return ""
    if kind == "keep":
        return f"{x * 100:.4g}%"
    if kind == "compression_ratio":
        return f"{(1 - x) * 100:.4g}%"
    if kind == "k_fraction":
        return f"k {x * 100:.4g}%"
    if kind == "top_k":
        return f"k={x:g}"
    return f"{int(x)}" if float(x).is_integer() else f"{kind}={x:g}"


def budget_order(kind, value) -> float:
    """A number that orders a kind's runs by budget (kept fraction or tokens), NaN if none."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return float("nan")
    if not isinstance(kind, str) or not kind:
        return float("nan")
    return 1 - x if kind == "compression_ratio" else x


def add_lines(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `line` (policy kind plus the non-budget parameters that vary within the kind),
    `budget` (point label) and `budget_value` (sort key) to a run table. The budget comes from the
    `budget_kind` / `budget_value` columns KVLab writes; a file without them (written before they
    existed) gets no budget labels, with a note."""
    df = df.copy()
    params = [parse_params(p) for p in df["params"]]
    if "budget_kind" in df:
        kinds_b = ["" if not isinstance(k, str) else k for k in df["budget_kind"]]
    else:
        note("no budget_kind column (a results file from before KVLab recorded budgets): points carry no budget labels")
        kinds_b = [""] * len(df)
    values_b = list(df["budget_value"]) if "budget_value" in df else [float("nan")] * len(df)
    kinds = list(df["policy"])
    varying = {}
    for kind in dict.fromkeys(kinds):
        rows = [(p, b) for p, k, b in zip(params, kinds, kinds_b) if k == kind]
        values = {}
        for p, b in rows:
            for k, v in p.items():
                if not b or base_param(k) != b:
                    values.setdefault(k, set()).add(str(v))
        # A parameter splits the kind when it varies, or is absent from some of its runs.
        varying[kind] = sorted(k for k, vs in values.items() if len(vs) > 1 or any(k not in p for p, _ in rows))
    lines = []
    for kind, p in zip(df["policy"], params):
        extra = ",".join(f"{k}={p[k]}" for k in varying.get(kind, []) if k in p)
        lines.append(f"{kind} ({extra})" if extra else kind)
    df["line"] = lines
    df["budget"] = [budget_text(k, v) for k, v in zip(kinds_b, values_b)]
    df["budget_value"] = [budget_order(k, v) for k, v in zip(kinds_b, values_b)]
    return df


class Styles:
    """One colour and marker per policy line, stable across every figure of a file."""

    def __init__(self, lines):
        self.map = {}
        used = {slot for slot, _ in _KNOWN.values()}
        # Free slots for other kinds, most distinct from the known ones first (Dark2 gold,
        # magenta, slate, teal, ...); tab10 grey (7) is left to the Pareto front.
        free = [i for i in (15, 13, 12, 10, 11, 14, 16) if i not in used]
        slots, n_other = {}, 0
        for line in lines:
            kind = line.split(" (")[0]
            if kind == FULL or kind in slots:
                continue
            if kind in _KNOWN:
                slots[kind] = _KNOWN[kind]
            else:
                slots[kind] = (free[n_other % len(free)], _MARKERS[(n_other + 5) % len(_MARKERS)])
                n_other += 1
        for line in lines:
            if line in self.map:
                continue
            kind = line.split(" (")[0]
            if kind == FULL:
                self.map[line] = ("black", "*")
                continue
            slot, marker = slots[kind]
            color = _PALETTE[slot]
            variants = sum(1 for l in self.map if l.split(" (")[0] == kind)
            if variants:                      # another variant of the same kind: lighter, other marker
                color = _shade(color, 0.6 ** variants)
                marker = _MARKERS[(_MARKERS.index(marker) + 3 * variants) % len(_MARKERS)] \
                    if marker in _MARKERS else marker
            self.map[line] = (color, marker)

    def color(self, line):
        return self.map.get(line, ("grey", "o"))[0]

    def marker(self, line):
        return self.map.get(line, ("grey", "o"))[1]


def _shade(color, amount):
    c = np.array(matplotlib.colors.to_rgb(color))
    return tuple(1 - (1 - c) * amount)


def fmt_tokens(n) -> str:
    n = int(n)
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}K"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def fmt_bytes(b) -> str:
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.0f} B"


def safe_name(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.+=-]+", "-", str(text)).strip("-")
    return s or "x"


class Saver:
    """Writes figures in every requested format and remembers the files."""

    def __init__(self, out_dir: Path, formats):
        self.out = Path(out_dir)
        self.formats = list(formats)
        self.written = []

    def save(self, fig, stem: str):
        self.out.mkdir(parents=True, exist_ok=True)
        for ext in self.formats:
            p = self.out / f"{safe_name(stem)}.{ext}"
            fig.savefig(p, bbox_inches="tight")
            self.written.append(p)
        plt.close(fig)


def note(msg: str):
    import sys
    print(f"note: {msg}", file=sys.stderr)


def pick_runs(df: pd.DataFrame, limit: int = 8) -> pd.DataFrame:
    """Informative runs of one (model, task, context): all of them when few, else the lowest
    budget of each policy line (the most compressed point), full cache excluded."""
    cand = df[df["policy"] != FULL]
    if cand.empty:
        cand = df
    if len(cand) <= limit:
        return cand
    rows = []
    for _, g in cand.groupby("line", sort=False):
        for col in ("budget_value", "compression", "read_fraction"):
            if col in g and g[col].notna().any():
                rows.append(g.loc[g[col].idxmin()])
                break
        else:
            rows.append(g.iloc[0])
    return pd.DataFrame(rows)


def short_label(row) -> str:
    """"snapkv · 25%": the policy line and the budget of a run (the full label is long)."""
    line, budget = str(row.get("line", row.get("policy", ""))), str(row.get("budget", ""))
    return f"{line} · {budget}" if budget else line
