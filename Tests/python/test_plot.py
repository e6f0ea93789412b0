"""Tests of experiments/plot.py on synthetic KVLab results files (docs/results-schema.md layout).

    python3 -m pytest Tests/python/test_plot.py        (or: python3 Tests/python/test_plot.py)
    python3 Tests/python/test_plot.py --write DIR      writes fake.h5 and loki.h5 there to look at

The fake file mimics what `kvlab run` writes: root provenance attributes, /model/<id>, one
/runs/<index> group per grid point (attributes, samples/, layer_head/, optional retention) and
a columnar /summary with variable-length strings.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))

import plot  # noqa: E402
from plotlib import common, loki, results  # noqa: E402

STR = h5py.string_dtype("utf-8")
LAYERS, HEADS, KV_HEADS, HEAD_DIM = 4, 8, 2, 16
BYTES_PER_TOKEN = 2 * LAYERS * KV_HEADS * HEAD_DIM * 4


def _policies():
    """(kind, family, params) of the fake grid."""
    out = [("full", "full", {})]
    for r in (0.9375, 0.875, 0.75, 0.5):
        out.append(("streaming_llm", "eviction", {"compression_ratio": r, "sinks": 4, "schedule": "always"}))
    for r in (0.9375, 0.875, 0.75, 0.5):
        out.append(("snapkv", "eviction", {"compression_ratio": r, "window": 64, "kernel": 5, "pooling": "avg"}))
    for r in (0.875, 0.5):
        out.append(("h2o", "eviction", {"compression_ratio": r, "recent_fraction": 0.5, "scoring": "causal",
                                        "schedule": "always"}))
    for b in (64, 128, 256, 512):
        out.append(("quest", "selection", {"budget": b, "page_size": 16, "dense_layers": 2, "gqa": "group"}))
    for d in (0.25, 0.5):
        for k in (0.125, 0.25):
            out.append(("loki", "selection", {"calibration": "cal.h5", "d_fraction": d, "k_fraction": k,
                                              "gqa": "group"}))
    out.append(("snapkv+knorm", "eviction+eviction",
                {"0.policy": "snapkv", "0.compression_ratio": 0.75, "0.window": 64, "0.kernel": 5,
                 "0.pooling": "avg", "1.policy": "knorm", "1.compression_ratio": 0.5, "1.schedule": "prefill"}))
    return out


def _label(kind, params):
    if not params:
        return kind
    return f"{kind}(" + ",".join(f"{k}={v}" for k, v in params.items()) + ")"


def _kept(kind, params, context):
    """Fraction stored and fraction read per step of a policy at a context."""
    if kind == "full":
        return 1.0, 1.0
    if kind == "quest":
        read = min(1.0, params["budget"] / context) * 0.95 + 2 / 16 * 0.5 * 0.3
        return 1.0 + 2 / 16 * 0.5, min(1.0, read)
    if kind == "loki":
        return 1.0, min(1.0, params["d_fraction"] * 0.5 + params["k_fraction"])
    if kind == "snapkv+knorm":
        return 0.25 * 0.5 + 64 / context, 0.25 * 0.5 + 64 / context
    kept = 1 - params["compression_ratio"] + (64 / context if kind == "snapkv" else 0)
    return kept, kept * 1.02


def _needle_score(kind, params, depth, context, rng):
    kept, read = _kept(kind, params, context)
    if kind == "full":
        p = 0.98
    elif kind == "streaming_llm":
        p = 0.95 if depth >= 1 - kept else 0.02
    elif kind == "quest":
        p = min(0.97, 0.3 + params["budget"] / 300)
    elif kind == "loki":
        p = min(0.95, 0.2 + 2 * params["k_fraction"] + params["d_fraction"])
    else:
        p = min(0.95, 0.1 + 1.6 * kept + 0.2 * depth)
    return float(rng.random() < p)


def _budget(params):
    """(budget_kind, budget_value) as KVLab records them: the budget key as the config wrote it."""
    for k, v in params.items():
        base = k.split(".")[-1]
        if base in ("budget", "keep", "compression_ratio", "top_k", "k_fraction"):
            return base, float(v)
    return "", float("nan")


INFO = ["budget_kind", "setup", "suffix", "text_source"]


def _write_run(runs, index, *, model, task, context, seed, kind, family, params, status, rng, retention):
    g = runs.create_group(f"{index:06d}")
    label = _label(kind, params)
    budget_kind, budget_value = _budget(params)
    info = {"budget_kind": budget_kind, "setup": "kvlab" if kind in ("quest", "loki") else "",
            "suffix": "decode", "text_source": ""}
    attrs = dict(index=index, model=model, task=task, context=context, seed=seed, policy=kind, family=family,
                 label=label, params=json.dumps(params), status=status,
                 key=json.dumps({"model": model, "task": {"kind": task, "context": context}, "policy": label}))
    metrics = {}
    samples = {}
    n = 5 if task in ("passkey", "needle") else 3
    if status == "ok":
        stored, read = _kept(kind, params, context)
        full_bytes = context * BYTES_PER_TOKEN
        depths = np.linspace(0, 1, n)
        if task in ("passkey", "needle"):
            scores = np.array([_needle_score(kind, params, d, context, rng) for d in depths])
            samples["meta_depth"] = depths
            samples["meta_needle_position"] = np.round(depths * (context - 40)) + 20
        else:
            base = 1.0 if kind == "full" else 1 - 0.6 * math.exp(-4 * min(stored, read * 1.3))
            scores = np.clip(base + rng.normal(0, 0.02, n) * (kind != "full"), 0, 1)
        samples.update(score=scores, compression=np.full(n, stored), read_fraction=np.full(n, read),
                       kv_bytes_full=np.full(n, float(full_bytes)),
                       kv_bytes_stored=np.full(n, stored * full_bytes),
                       kv_bytes_read_per_step=np.full(n, read * full_bytes * 0.97),
                       tokens_seen=np.full(n, float(context + 8)))
        metrics = {k: float(np.mean(v)) for k, v in samples.items() if not k.startswith("meta_")}
        metrics["kv_bytes_stored_peak"] = metrics["kv_bytes_stored"]
        metrics["memory_fraction"] = stored * 1.01 + (0.125 if kind == "quest" else 0)
        metrics["kv_bytes_total_full"] = full_bytes * 1.01
        metrics["score_n"] = float(n)
        half = 0.3 / math.sqrt(n)
        metrics["score_lo"] = max(0.0, metrics["score"] - half)
        metrics["score_hi"] = min(1.0, metrics["score"] + half)
        if task == "fidelity":
            metrics["attention_recall"] = min(1.0, 0.5 + 0.5 * read)
        lh = g.create_group("layer_head")
        lh.create_dataset("kept_fraction", data=np.full((LAYERS, KV_HEADS), min(stored, 1.0), dtype=np.float32))
        if task == "fidelity":
            recall = np.clip(read + rng.normal(0, 0.08, (LAYERS, HEADS)) + 0.3 * (np.arange(LAYERS)[:, None] == 0),
                             0, 1)
            lh.create_dataset("attention_recall", data=recall.astype(np.float32))
            lh.create_dataset("attn_output_rel_error", data=((1 - recall) * 0.8).astype(np.float32))
        if retention and family == "eviction":
            kept_n = max(1, int(round(stored * context)))
            maps = np.full((n, LAYERS, KV_HEADS, kept_n), -1, dtype=np.int32)
            for s in range(n):
                for layer in range(LAYERS):
                    for h in range(KV_HEADS):
                        if kind == "streaming_llm":
                            pos = np.r_[0:4, context - (kept_n - 4):context]
                        else:
                            pos = np.sort(rng.choice(context, kept_n, replace=False))
                        pos = pos[:kept_n - (layer + h) % 3]
                        maps[s, layer, h, :len(pos)] = pos
            g.create_dataset("retention", data=maps)
    sg = g.create_group("samples")
    sg.attrs["order"] = json.dumps(sorted(samples))
    for k in sorted(samples):
        sg.create_dataset(k, data=np.asarray(samples[k], dtype=float))
    metrics["budget_value"] = budget_value
    attrs["metrics"] = json.dumps(list(metrics))
    attrs["info"] = json.dumps(INFO)
    for k, v in {**attrs, **info, **metrics}.items():
        g.attrs[k] = v
    return {**attrs, **info, **metrics, "run": f"{index:06d}"}


FULL_GRID = [("fidelity", 512), ("fidelity", 2048), ("passkey", 1024), ("passkey", 2048), ("passkey", 4096),
             ("needle", 2048)]
SMALL_GRID = [("fidelity", 512), ("passkey", 1024), ("passkey", 2048)]


def make_fake_results(path, *, retention=True, failed=True, summary=True, seeds=(0,), drop=(), grid=FULL_GRID):
    """Writes a fake results file; returns the path."""
    rng = np.random.default_rng(0)
    rows = []
    with h5py.File(path, "w") as f:
        for k, v in dict(kvlab_version="0.1.0", git_commit="0" * 40, created="2026-01-01T00:00:00Z",
                         host="test", config="name: fake", config_hash="ab" * 32, shard="").items():
            f.attrs[k] = v
        f.attrs["schema_version"] = 1
        m = f.create_group("model").create_group("toy")
        m.attrs.update(id="toy", source="synthetic:toy", config_hash="cd" * 32, weights_hash="seed 1",
                       config_json=json.dumps({"layers": LAYERS, "heads": HEADS, "kvHeads": KV_HEADS,
                                               "headDim": HEAD_DIM}))
        m.attrs["parameter_count"] = 1000
        m.attrs["kv_bytes_per_token"] = BYTES_PER_TOKEN
        runs = f.create_group("runs")
        index = 1
        for task, context in grid:
            for seed in seeds:
                for kind, family, params in _policies():
                    status = "ok"
                    if failed and task == "needle" and kind == "h2o":
                        status = "error: out of memory (fake)"
                    rows.append(_write_run(runs, index, model="toy", task=task, context=context, seed=seed,
                                           kind=kind, family=family, params=params, status=status, rng=rng,
                                           retention=retention and task == "passkey" and context == 1024))
                    index += 1
        if summary:
            sg = f.create_group("summary")
            metric_names = []
            for r in rows:
                metric_names += [k for k in json.loads(r["metrics"]) if k not in metric_names]
            cols = [c for c in results.FIXED_COLUMNS + INFO + metric_names if c not in drop]
            sg.attrs["columns"] = json.dumps(cols)
            sg.attrs["rows"] = len(rows)
            for c in cols:
                if c in results.STRING_COLUMNS:
                    sg.create_dataset(c, data=[str(r.get(c, "")) for r in rows], dtype=STR)
                elif c in ("index", "context", "seed"):
                    sg.create_dataset(c, data=np.array([r[c] for r in rows], dtype=np.int64))
                else:
                    sg.create_dataset(c, data=np.array([r.get(c, np.nan) for r in rows], dtype=float))
    return Path(path)


def make_fake_loki(path, layout="standard"):
    rng = np.random.default_rng(1)
    spectra = []
    for layer in range(LAYERS):
        decay = 0.25 + 0.12 * layer
        heads = []
        for _ in range(KV_HEADS):
            v = np.exp(-decay * np.arange(HEAD_DIM)) * rng.uniform(0.8, 1.2, HEAD_DIM)
            v = np.sort(v)[::-1]
            heads.append(v / v.sum())
        spectra.append(heads)
    ratio = np.array(spectra, dtype=np.float32)                 # [L, Hkv, d], descending
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "kvlab-loki-calibration"
        f.attrs["tokens"] = 4096
        f.attrs["model"] = "toy"
        if layout == "standard":
            f.create_dataset("bases", data=np.zeros((LAYERS, KV_HEADS, HEAD_DIM, HEAD_DIM), np.float32))
            f.create_dataset("explained_variance", data=ratio * 7)
            f.create_dataset("explained_variance_ratio", data=ratio)
        elif layout == "raw_ascending":
            f.create_dataset("key_variance", data=(ratio * 3)[..., ::-1])
        elif layout == "cumulative":
            f.create_dataset("cumulative_variance", data=np.cumsum(ratio, axis=-1))
        elif layout == "per_layer":
            for layer in range(LAYERS):
                f.create_dataset(f"layer_{layer}/explained_variance_ratio", data=ratio[layer])
        elif layout == "none":
            f.create_dataset("bases", data=np.zeros((2, 2), np.float32))
    return Path(path), np.cumsum(ratio, axis=-1)


# --- tests ---------------------------------------------------------------------------------

def _run(argv, capsys=None):
    rc = plot.main([str(a) for a in argv])
    assert rc == 0
    return rc


def _names(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def test_all_figures(tmp_path, capsys):
    res = make_fake_results(tmp_path / "fake.h5")
    cal, _ = make_fake_loki(tmp_path / "cal.h5")
    _run([res, "--loki", cal, "--summary"])
    out = capsys.readouterr()
    names = _names(tmp_path / "fake-plots")
    for stem in ("tradeoff_fidelity", "tradeoff_passkey", "tradeoff_needle", "needle_full", "needle_quest",
                 "needle_streaming_llm", "needle_loki", "loki_variance",
                 "layer_head_attention_recall_fidelity_512", "layer_head_kept_fraction_passkey_1024"):
        assert f"{stem}.png" in names, (stem, names)
    assert any(n.startswith("retention_") for n in names)
    assert "needle_h2o.png" in names                 # h2o ran on passkey; its needle runs failed
    assert "skipping 2 failed run(s)" in out.err      # h2o on needle (2 budgets)
    assert "tradeoff_fidelity.png" in out.out         # the list of files written
    assert "streaming_llm" in out.out                 # --summary table


def test_formats_and_out_dir(tmp_path):
    res = make_fake_results(tmp_path / "fake.h5", retention=False, grid=SMALL_GRID)
    _run([res, "--out", tmp_path / "figs", "--format", "png,svg"])
    names = _names(tmp_path / "figs")
    assert "tradeoff_passkey.png" in names and "tradeoff_passkey.svg" in names
    assert not any(n.startswith("retention_") for n in names)


def test_no_summary_rebuilt_from_runs(tmp_path):
    res = make_fake_results(tmp_path / "fake.h5", summary=False, failed=False, grid=SMALL_GRID)
    loaded = results.load(res)
    assert any("rebuilt" in n for n in loaded.notes)
    assert len(loaded.ok) == len(loaded.table) > 0
    _run([res])
    assert "tradeoff_fidelity.png" in _names(tmp_path / "fake-plots")


def test_missing_columns(tmp_path, capsys):
    res = make_fake_results(tmp_path / "fake.h5", drop=("read_fraction", "compression", "family", "label"),
                            retention=False, grid=SMALL_GRID)
    _run([res])
    names = _names(tmp_path / "fake-plots")
    assert "tradeoff_passkey.png" in names           # compression derived, read_fraction derived

    res2 = make_fake_results(tmp_path / "bare.h5", drop=("read_fraction", "compression", "kv_bytes_stored",
                                                         "kv_bytes_read_per_step", "score"), retention=False,
                             grid=SMALL_GRID)
    _run([res2])
    err = capsys.readouterr().err
    assert "trade-off figures skipped" in err


def test_all_failed(tmp_path, capsys):
    path = tmp_path / "failed.h5"
    make_fake_results(path, grid=SMALL_GRID)
    with h5py.File(path, "a") as f:
        n = len(f["summary/status"])
        del f["summary/status"]
        f["summary"].create_dataset("status", data=["error: boom"] * n, dtype=STR)
    _run([path])
    out = capsys.readouterr()
    assert "no successful runs" in out.err
    assert "no figures written" in out.out


def test_seeds_are_averaged(tmp_path):
    res = make_fake_results(tmp_path / "fake.h5", seeds=(0, 1), retention=False, grid=SMALL_GRID)
    _run([res])
    assert "tradeoff_fidelity.png" in _names(tmp_path / "fake-plots")


def test_lines_and_budgets():
    import pandas as pd
    df = pd.DataFrame({"policy": ["snapkv", "snapkv", "snapkv", "loki", "loki", "full", "streaming_llm"],
                       "params": [json.dumps({"compression_ratio": 0.5, "window": 64}),
                                  json.dumps({"compression_ratio": 0.75, "window": 64}),
                                  json.dumps({"compression_ratio": 0.75, "window": 32}),
                                  json.dumps({"d_fraction": 0.25, "k_fraction": 0.125, "gqa": "group"}),
                                  json.dumps({"d_fraction": 0.25, "k_fraction": 0.25, "gqa": "group"}),
                                  "{}", json.dumps({"keep": 0.125, "sinks": 4})],
                       "budget_kind": ["compression_ratio", "compression_ratio", "compression_ratio", "k_fraction",
                                       "k_fraction", "", "keep"],
                       "budget_value": [0.5, 0.75, 0.75, 0.125, 0.25, float("nan"), 0.125]})
    out = common.add_lines(df)
    assert list(out["line"]) == ["snapkv (window=64)", "snapkv (window=64)", "snapkv (window=32)", "loki",
                                 "loki", "full", "streaming_llm"]
    assert list(out["budget"]) == ["50%", "25%", "25%", "k 12.5%", "k 25%", "", "12.5%"]
    assert out["budget_value"].iloc[0] == 0.5 and out["budget_value"].iloc[6] == 0.125


def test_budgets_come_from_the_recorded_columns_only(capsys):
    """No guessing from parameter names: without budget_kind a budget-like key splits lines."""
    import pandas as pd
    df = pd.DataFrame({"policy": ["snapkv", "snapkv"],
                       "params": [json.dumps({"keep": 0.5, "window": 64}), json.dumps({"keep": 0.25, "window": 64})]})
    out = common.add_lines(df)
    assert list(out["budget"]) == ["", ""]
    assert out["line"].nunique() == 2
    assert "no budget_kind column" in capsys.readouterr().err
    import inspect
    assert "_BUDGET_PARAM" not in inspect.getsource(common)


def test_layer_head_titles_do_not_overlap(tmp_path):
    """KIVI's long labels are wrapped to the panel width: no two panel titles overlap."""
    import pandas as pd
    from plotlib import layerhead
    rows = [pd.Series({"run": f"{i:06d}", "line": f"kivi (bits={b},group_size=32,residual=128)", "budget": "",
                       "policy": "kivi", "model": "toy"}) for i, b in enumerate((2, 4, 2, 4))]
    have = [(r, np.full((LAYERS, KV_HEADS), 0.3)) for r in rows]

    class Res:
        def model_config(self, model):
            return {"layers": LAYERS, "heads": HEADS, "kvHeads": KV_HEADS}

    fig = layerhead._figure(Res(), "toy", "passkey", 1024, "kept_fraction", have)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    assert len(boxes) == 4
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            assert not (a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1), (i, j, a, b)
    assert all("\n" in ax.get_title() for ax in fig.axes if ax.get_title())


def test_perplexity_is_a_log_ratio_and_memory_includes_metadata():
    import pandas as pd
    from plotlib import tradeoff
    old = pd.DataFrame({"task": ["perplexity"] * 3, "ppl": [20.0, 22.0, 20000.0], "ppl_full": [20.0] * 3,
                        "score": [0.0, -2.0, -19980.0]})
    y = tradeoff._perplexity_scores(old)["score"]
    assert np.allclose(y, [0.0, -np.log(1.1), -np.log(1000.0)])
    new = old.assign(score=[0.0, -0.0953, -6.9], score_n=[4.0] * 3, score_lo=[0.0, -0.12, -7.1])
    assert list(tradeoff._perplexity_scores(new)["score"]) == [0.0, -0.0953, -6.9]   # KVLab's score already is
    # Error bars: the stored 95% interval; several runs of one point span their intervals.
    df = pd.DataFrame({"line": ["h2o"] * 2, "policy": ["h2o"] * 2, "label": ["h2o(keep=0.25)"] * 2,
                       "budget": ["25%"] * 2, "budget_value": [0.25] * 2, "score": [0.5, 0.7],
                       "score_lo": [0.2, 0.4], "score_hi": [0.8, 0.9], "score_n": [10.0, 10.0],
                       "memory_fraction": [0.3, 0.3], "compression": [0.25, 0.25]})
    agg = tradeoff._aggregate(df)
    assert agg.loc[0, "score_lo"] == 0.2 and agg.loc[0, "score_hi"] == 0.9 and agg.loc[0, "score_n"] == 20
    assert tradeoff.PANELS[0][0] == "memory_fraction"


def test_old_file_memory_axis_is_payload_only(tmp_path, capsys):
    res = make_fake_results(tmp_path / "old.h5", drop=("memory_fraction", "kv_bytes_total_full"), retention=False,
                            grid=SMALL_GRID)
    _run([res])
    assert "payload only" in capsys.readouterr().err
    assert "tradeoff_passkey.png" in _names(tmp_path / "old-plots")


def test_loki_layouts(tmp_path):
    for layout in ("standard", "raw_ascending", "cumulative", "per_layer"):
        path, want = make_fake_loki(tmp_path / f"{layout}.h5", layout)
        got, _, _ = loki.read_variance(path)
        assert got.shape == want.shape, layout
        assert np.allclose(got, want, atol=1e-4), layout
    path, _ = make_fake_loki(tmp_path / "none.h5", "none")
    assert loki.read_variance(path) is None


def test_loki_only(tmp_path, capsys):
    path, _ = make_fake_loki(tmp_path / "cal.h5")
    _run(["--loki", path, "--out", tmp_path / "o"])
    assert _names(tmp_path / "o") == ["loki_variance.png"]
    none, _ = make_fake_loki(tmp_path / "none.h5", "none")
    _run(["--loki", none, "--out", tmp_path / "o2"])
    assert "loki_variance skipped" in capsys.readouterr().err


def test_pareto():
    from plotlib.tradeoff import _pareto
    xs, ys = [0.1, 0.2, 0.3, 0.25, 1.0], [0.5, 0.4, 0.9, 0.9, 1.0]
    assert sorted(_pareto(xs, ys)) == [0, 3, 4]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        d = Path(sys.argv[2])
        d.mkdir(parents=True, exist_ok=True)
        print(make_fake_results(d / "fake.h5"), make_fake_loki(d / "loki.h5")[0])
        sys.exit(0)
    import pytest
    sys.exit(pytest.main([__file__, "-q"]))
