#!/usr/bin/env python3
"""Read a KVLab results file with h5py and pandas only (no KVLab), as docs/results-schema.md
describes, and check its basic invariants.

    python experiments/check_results.py results.h5

Prints the provenance, the models, the number of runs and the head of the summary table.
Exits non-zero (AssertionError) when the summary does not have one row per /runs group, in
grid-index order, or when a run's attributes disagree with its summary row.
"""
import json
import sys

import h5py
import numpy as np
import pandas as pd

SUPPORTED_SCHEMA = 1


def summary_frame(f):
    """The /summary group as a DataFrame, columns in the file's order."""
    g = f["summary"]
    df = pd.DataFrame({k: (v.asstr()[()] if v.dtype.kind == "O" else v[()]) for k, v in g.items()})
    return df[json.loads(g.attrs["columns"])]


def main(path):
    with h5py.File(path, "r") as f:
        attrs = f.attrs
        version = int(attrs["schema_version"])
        assert version <= SUPPORTED_SCHEMA, f"schema_version {version} is newer than {SUPPORTED_SCHEMA}"
        print(f"file            {path}")
        for name in ["kvlab_version", "git_commit", "created", "host", "config_hash", "schema_version", "shard"]:
            print(f"{name:<15} {attrs[name]}")
        print("config:\n  " + "\n  ".join(str(attrs["config"]).splitlines()))
        for gname, m in f["model"].items():
            print(f"model {m.attrs['id']}: {int(m.attrs['parameter_count'])} parameters, "
                  f"{int(m.attrs['kv_bytes_per_token'])} KV bytes/token, weights {m.attrs['weights_hash']}")

        runs = f["runs"]
        df = summary_frame(f)
        print(f"runs            {len(runs)}")
        with pd.option_context("display.width", 200, "display.max_columns", 12):
            print(df.head())

        assert len(df) == len(runs), f"summary has {len(df)} rows for {len(runs)} /runs groups"
        assert list(df["run"]) == sorted(runs.keys(), key=lambda n: int(runs[n].attrs["index"])), "rows not in run order"
        assert df["index"].is_monotonic_increasing and df["index"].is_unique
        metrics = [c for c in df.columns if df[c].dtype.kind == "f"]
        for row in df.itertuples(index=False):
            g = runs[row.run]
            assert int(g.attrs["index"]) == row.index and g.attrs["key"] == row.key
            for name in json.loads(g.attrs["metrics"]):
                value = float(g.attrs[name])
                cell = float(getattr(row, name)) if name.isidentifier() else float(df.loc[df["run"] == row.run, name].iloc[0])
                assert (np.isnan(value) and np.isnan(cell)) or value == cell, f"{row.run}: {name} {value} != {cell}"
            for name in json.loads(g["layer_head"].attrs["order"]):
                assert g["layer_head"][name].ndim == 2
            if "retention" in g:
                assert g["retention"].ndim == 4 and g["retention"].dtype == np.int32
        print(f"ok: {len(df)} runs, summary columns: {', '.join(df.columns)}; metric columns: {', '.join(metrics)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
