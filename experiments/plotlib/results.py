"""Reading a KVLab results file (docs/results-schema.md) into pandas and numpy.

Tolerant by design: a missing /summary is rebuilt from the /runs attributes, missing
columns come back as absent (callers check), and failed runs (status != "ok") are kept
apart with their messages so figures can skip them with a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

# Fixed columns of /summary (ResultsSchema.fixedColumns); metric columns follow.
FIXED_COLUMNS = ["run", "index", "key", "model", "task", "context", "seed",
                 "policy", "family", "label", "params", "status"]
STRING_COLUMNS = {"run", "key", "model", "task", "policy", "family", "label", "params", "status",
                  # the runs' text facts (docs/results-schema.md)
                  "budget_kind", "setup", "suffix", "text_source"}
# Run-group attributes that are not metrics (besides the fixed columns).
NON_METRIC_ATTRS = {"metrics", "info", "committed", "git_commit", "kvlab_version", "host"}


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


def _column(ds: h5py.Dataset) -> np.ndarray:
    """A 1-D summary column; variable-length strings decoded to str."""
    if h5py.check_string_dtype(ds.dtype) is not None or ds.dtype.kind in ("O", "S", "U"):
        try:
            return np.asarray(ds.asstr()[()], dtype=object)
        except (TypeError, ValueError):
            return np.asarray([_text(v) for v in ds[()]], dtype=object)
    return ds[()]


def parse_params(text) -> dict:
    """A run's `params` JSON object as a dict ({} when missing or malformed)."""
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class Results:
    path: Path
    attrs: dict                       # root attributes (provenance)
    table: pd.DataFrame               # one row per run (every status)
    models: dict = field(default_factory=dict)   # id -> attrs (config_json parsed into "config")
    notes: list = field(default_factory=list)    # what the reader had to work around

    @property
    def ok(self) -> pd.DataFrame:
        """Runs whose status is "ok" (all runs when the file has no status column)."""
        if "status" not in self.table:
            return self.table
        return self.table[self.table["status"].astype(str) == "ok"]

    @property
    def failed(self) -> pd.DataFrame:
        if "status" not in self.table:
            return self.table.iloc[0:0]
        return self.table[self.table["status"].astype(str) != "ok"]

    def has(self, column: str) -> bool:
        return column in self.table.columns and self.table[column].notna().any()

    # Per-run datasets -------------------------------------------------------------------

    def _group(self, f: h5py.File, run: str):
        name = f"runs/{run}"
        return f[name] if name in f else None

    def samples(self, run: str) -> dict:
        """The per-sample series of a run: name -> 1-D float array."""
        with h5py.File(self.path, "r") as f:
            g = self._group(f, run)
            if g is None or "samples" not in g:
                return {}
            return {k: np.asarray(v[()], dtype=float).reshape(-1)
                    for k, v in g["samples"].items() if isinstance(v, h5py.Dataset)}

    def layer_head(self, run: str) -> dict:
        """The [layers, heads] grids of a run: name -> 2-D float array."""
        with h5py.File(self.path, "r") as f:
            g = self._group(f, run)
            if g is None or "layer_head" not in g:
                return {}
            out = {}
            for k, v in g["layer_head"].items():
                if isinstance(v, h5py.Dataset):
                    a = np.asarray(v[()], dtype=float)
                    if a.ndim == 1:
                        a = a[None, :]
                    if a.ndim == 2:
                        out[k] = a
            return out

    def retention(self, run: str):
        """The retention map [samples, layers, kvHeads, maxKept] (int, -1 padded) or None."""
        with h5py.File(self.path, "r") as f:
            g = self._group(f, run)
            if g is None or "retention" not in g:
                return None
            a = np.asarray(g["retention"][()])
        if a.ndim == 3:                     # a single sample stored without the sample axis
            a = a[None]
        return a if a.ndim == 4 else None

    def runs_with(self, member: str) -> list:
        """Run names whose group has `member` (e.g. "retention")."""
        with h5py.File(self.path, "r") as f:
            if "runs" not in f:
                return []
            return [name for name, g in f["runs"].items() if isinstance(g, h5py.Group) and member in g]

    def model_config(self, model_id: str) -> dict:
        return self.models.get(model_id, {}).get("config", {})


def load(path) -> Results:
    """Reads the summary (or rebuilds it from /runs), the models and the provenance."""
    path = Path(path)
    notes = []
    with h5py.File(path, "r") as f:
        attrs = {k: (_text(v) if isinstance(v, (bytes, str)) else (v.item() if hasattr(v, "item") else v))
                 for k, v in f.attrs.items()}
        table = None
        if "summary" in f and isinstance(f["summary"], h5py.Group):
            table = _read_summary(f["summary"], notes)
        if table is None or table.empty:
            if "runs" in f:
                table = _rebuild_summary(f["runs"])
                notes.append("no usable /summary: rebuilt from /runs attributes")
            else:
                table = pd.DataFrame(columns=FIXED_COLUMNS)
        models = {}
        if "model" in f:
            for name, g in f["model"].items():
                m = {k: (_text(v) if isinstance(v, (bytes, str)) else (v.item() if hasattr(v, "item") else v))
                     for k, v in g.attrs.items()}
                try:
                    m["config"] = json.loads(m.get("config_json", "") or "{}")
                except json.JSONDecodeError:
                    m["config"] = {}
                models[m.get("id", name)] = m
    table = _normalise(table, notes)
    return Results(path=path, attrs=attrs, table=table, models=models, notes=notes)


def _read_summary(g: h5py.Group, notes: list):
    cols = {}
    n = None
    for name, ds in g.items():
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
            continue
        col = _column(ds)
        if n is None:
            n = len(col)
        if len(col) != n:
            notes.append(f"/summary/{name} has {len(col)} rows, expected {n}: ignored")
            continue
        cols[name] = col
    if not cols:
        return None
    order = []
    if "columns" in g.attrs:
        try:
            order = [c for c in json.loads(_text(g.attrs["columns"])) if c in cols]
        except json.JSONDecodeError:
            order = []
    order += [c for c in cols if c not in order]
    return pd.DataFrame({c: cols[c] for c in order})


def _rebuild_summary(runs: h5py.Group) -> pd.DataFrame:
    rows = []
    for name, g in runs.items():
        if not isinstance(g, h5py.Group):
            continue
        row = {"run": name}
        for k, v in g.attrs.items():
            if k in NON_METRIC_ATTRS:
                continue
            if isinstance(v, (bytes, str)):
                row[k] = _text(v)
            elif np.ndim(v) == 0:
                row[k] = v.item() if hasattr(v, "item") else v
        rows.append(row)
    return pd.DataFrame(rows)


def _normalise(table: pd.DataFrame, notes: list) -> pd.DataFrame:
    table = table.copy()
    for c in STRING_COLUMNS & set(table.columns):
        table[c] = table[c].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else _text(v))
    if "run" not in table:
        if "index" in table:
            table["run"] = [f"{int(i):06d}" for i in table["index"]]
        else:
            table["run"] = [f"{i + 1:06d}" for i in range(len(table))]
    for c in table.columns:
        if c in STRING_COLUMNS:
            continue
        if table[c].dtype == object:
            converted = pd.to_numeric(table[c], errors="coerce")
            if converted.notna().sum() >= table[c].notna().sum():
                table[c] = converted
    defaults = {"model": "model", "task": "task", "policy": "policy", "family": "", "label": "",
                "params": "{}", "status": "ok"}
    for c, v in defaults.items():
        if c not in table:
            table[c] = v
            notes.append(f"no '{c}' column: assumed '{v}'")
    if "context" not in table:
        table["context"] = 0
        notes.append("no 'context' column: one context assumed")
    if "seed" not in table:
        table["seed"] = 0
    table["label"] = [lab if lab else pol for lab, pol in zip(table["label"], table["policy"])]
    # Derived memory columns when the direct ones are missing.
    if "compression" not in table and {"kv_bytes_stored", "kv_bytes_full"} <= set(table.columns):
        table["compression"] = table["kv_bytes_stored"] / table["kv_bytes_full"].where(table["kv_bytes_full"] > 0)
        notes.append("'compression' derived from kv_bytes_stored / kv_bytes_full")
    return table.reset_index(drop=True)
