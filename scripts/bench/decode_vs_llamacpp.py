#!/usr/bin/env python3
"""Side-by-side decoder benchmark: KVLab (`kvlab bench decoder`) vs llama.cpp (llama-cpp-python) on
the same GGUF files, the same threads and the same token ids, in interleaved rounds.

Comparisons (--pairs, default all):
  q4_1  KVLab on the Q4_1 file, weights kept packed   vs  llama.cpp on the same file
  f16   KVLab on an F16 GGUF, weights kept 16-bit     vs  llama.cpp on the same file
  f32   KVLab on an F32 GGUF                          vs  llama.cpp on the same file
        (the issue's prefill target: KVLab's prefill at or above llama.cpp's F32 prefill)
The F16/F32 files are the Q4_1 file's weights dequantized by gguf-py
(scripts/bench/make_dense_gguf.py, run automatically when they are missing).

Metrics (each side times the same things): prefill tok/s of one forward over P tokens
(last-row logits; median of R), and decode tok/s at context C: prefill C tokens once (untimed),
then R consecutive windows of N single-token steps (contexts C, C+N, ...; tok/s = N / time,
median of the R windows; `kvlab bench decoder --prefill-once`). Token ids: SplitMix64(1234) %
vocab in KVLab's order (prompt, then per context its C + N ids; each window replays the N ids).

Rounds: each round runs, for each pair, the two sides one after the other in separate processes,
KVLab first in odd rounds and llama.cpp first in even rounds, and records the 1-minute load
average before and after each run (the machine is shared). Reported per metric: the median of
the per-round values and their range, and the median and range of the per-round ratios
(KVLab / llama.cpp, each round's two runs being adjacent in time). A target counts as met when
the median ratio reaches it; the table also says in how many rounds it did.

KV cache: llama.cpp's is F16 (its default; --llama-kv-type). KVLab's is set by --kv-dtype, passed
to `kvlab bench decoder --kv-dtype` when not f32 (f32, f16 or bf16;
the 4096 target is with f16).

    swift build -c release --product kvlab
    python3 scripts/bench/decode_vs_llamacpp.py --rounds 3
    # -> results/bench/decode_vs_llamacpp.json and a markdown table on stdout

Needs /work/venvs/llamacpp (llama-cpp-python; --llama-python to point elsewhere).
"""
import argparse
import datetime
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

from common import SplitMix64, run_json

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
Q4_1 = os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
GGML_TYPES = {"f32": 0, "f16": 1, "q8_0": 8, "q4_0": 2}
TARGETS = {"q4_1": 1.0, "f16": 1.0}


def token_plan(vocab, prefill, contexts, steps):
    rng = SplitMix64(1234)
    draw = lambda n: [rng.next() % vocab for _ in range(n)]
    prompt = draw(prefill)
    return prompt, {c: (draw(c), draw(steps)) for c in contexts}


# ------------------------------------------------------------------ llama.cpp side (in its venv)
def llama_worker(spec):
    import llama_cpp
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=spec["model"], n_ctx=spec["n_ctx"], n_batch=512, n_ubatch=512,
                          n_threads=spec["threads"], n_threads_batch=spec["threads"], type_k=spec["kv_type"],
                          type_v=spec["kv_type"], flash_attn=spec["flash_attn"], logits_all=False, verbose=False)
    load_s = time.perf_counter() - t0
    vocab = llm.n_vocab()
    prompt, per_ctx = token_plan(vocab, spec["prefill"], spec["contexts"], spec["steps"])

    def prefill(tokens):
        llm.reset()
        t = time.perf_counter()
        llm.eval(tokens)
        return time.perf_counter() - t

    def decode(ctx_tokens, steps, windows):
        # Prefill once, then `windows` consecutive timed windows of len(steps) steps (as
        # `kvlab bench decoder --prefill-once`).
        llm.reset()
        llm.eval(ctx_tokens)
        rates = []
        for _ in range(windows):
            t = time.perf_counter()
            for tok in steps:
                llm.eval([tok])
            rates.append(len(steps) / (time.perf_counter() - t))
        return rates

    prefill(prompt[:64])                      # warm-up
    decode(prompt[:16], prompt[16:20], 1)
    pre = [spec["prefill"] / prefill(prompt) for _ in range(spec["repeats"])]
    dec = {str(c): decode(*per_ctx[c], spec["repeats"]) for c in spec["contexts"]}
    return {"prefill_tok_s": statistics.median(pre), "prefill_runs": pre,
            "decode_tok_s": {c: statistics.median(v) for c, v in dec.items()}, "decode_runs": dec,
            "load_s": load_s, "llama_cpp_python": llama_cpp.__version__,
            "system_info": llama_cpp.llama_print_system_info().decode().strip()}


# ------------------------------------------------------------------ runs
def run_kvlab(args, model, contexts):
    cmd = [args.kvlab, "bench", "decoder", "--model", model, "--weights", "stored", "--prefill", str(args.prefill),
           "--decode-contexts", ",".join(map(str, contexts)), "--decode-tokens", str(args.steps),
           "--repeats", str(args.repeats), "--threads", str(args.threads), "--prefill-once", "--json"]
    if args.kv_dtype != "f32":
        cmd += ["--kv-dtype", args.kv_dtype]
    return run_json(cmd)


def run_llama(args, model, contexts):
    spec = {"model": model, "n_ctx": max([args.prefill] + contexts) + args.steps + 16, "threads": args.threads,
            "kv_type": GGML_TYPES[args.llama_kv_type], "flash_attn": args.llama_flash_attn, "prefill": args.prefill,
            "contexts": contexts, "steps": args.steps, "repeats": args.repeats}
    cmd = [args.llama_python, os.path.abspath(__file__), "--llama-worker", json.dumps(spec)]
    res = run_json(cmd, what="llama.cpp worker")
    res.update(kv_type=args.llama_kv_type, flash_attn=args.llama_flash_attn)
    return res


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kvlab", default=os.path.join(REPO, ".build/release/kvlab"))
    ap.add_argument("--llama-python", default="/work/venvs/llamacpp/bin/python")
    ap.add_argument("--pairs", default="q4_1,f16,f32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--contexts", default="512,4096")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--kv-dtype", default="f32", help="KVLab's KV cache dtype (f32, f16, bf16)")
    ap.add_argument("--llama-kv-type", default="f16", choices=sorted(GGML_TYPES))
    ap.add_argument("--llama-flash-attn", action="store_true")
    ap.add_argument("--f32-decode", action="store_true", help="also measure decode for the f32 pair (prefill only by default)")
    ap.add_argument("--out", default=os.path.join(REPO, "results/bench/decode_vs_llamacpp.json"))
    ap.add_argument("--llama-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.llama_worker:
        print(json.dumps(llama_worker(json.loads(args.llama_worker))))
        return 0

    contexts = [int(c) for c in args.contexts.split(",")]
    pairs = args.pairs.split(",")
    files = {"q4_1": Q4_1, "f16": Q4_1.replace(".Q4_1.", ".F16."), "f32": Q4_1.replace(".Q4_1.", ".F32.")}
    missing = [t.upper() for t in pairs if t != "q4_1" and not os.path.exists(files[t])]
    if missing:
        subprocess.run([sys.executable, os.path.join(REPO, "scripts/bench/make_dense_gguf.py"), Q4_1,
                        "--types", ",".join(missing)], check=True)
    rounds = []
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for r in range(args.rounds):
        rec = {}
        for pair in pairs:
            ctx = contexts if pair != "f32" or args.f32_decode else [64]
            order = ["kvlab", "llama"] if r % 2 == 0 else ["llama", "kvlab"]
            res = {}
            for side in order:
                res[side] = (run_kvlab if side == "kvlab" else run_llama)(args, files[pair], ctx)
                k = res[side]
                print(f"round {r + 1} {pair:5s} {side:6s} prefill {k['prefill_tok_s']:7.1f}  decode " +
                      "  ".join(f"@{c} {v:6.2f}" for c, v in k["decode_tok_s"].items()) +
                      f"  (load {k['load_before']} -> {k['load_after']})", flush=True)
            rec[pair] = res
        rounds.append(rec)

    # Per metric: per-round values of each side and their ratios.
    table = []
    for pair in pairs:
        metrics = [("prefill", None)] + [(f"decode@{c}", str(c)) for c in
                                         (contexts if pair != "f32" or args.f32_decode else [])]
        for name, c in metrics:
            get = (lambda s: s["prefill_tok_s"]) if c is None else (lambda s, c=c: s["decode_tok_s"][c])
            kv = [get(rd[pair]["kvlab"]) for rd in rounds]
            ll = [get(rd[pair]["llama"]) for rd in rounds]
            ratios = [a / b for a, b in zip(kv, ll)]
            target = TARGETS.get(pair) if c is not None or pair != "f32" else None
            row = {"pair": pair, "metric": name, "kvlab": summary(kv), "llama_cpp": summary(ll),
                   "ratio": summary(ratios), "target": target}
            if target is not None:
                row["rounds_met"] = sum(x >= target for x in ratios)
                row["met"] = statistics.median(ratios) >= target
            table.append(row)
    # KVLab prefill (packed weights) against llama.cpp's F32 prefill, round by round.
    if "f32" in pairs:
        ll32 = [rd["f32"]["llama"]["prefill_tok_s"] for rd in rounds]
        for pair in [p for p in pairs if p != "f32"]:
            kv = [rd[pair]["kvlab"]["prefill_tok_s"] for rd in rounds]
            ratios = [a / b for a, b in zip(kv, ll32)]
            table.append({"pair": f"{pair} vs llama.cpp f32", "metric": "prefill", "kvlab": summary(kv),
                          "llama_cpp": summary(ll32), "ratio": summary(ratios), "target": 1.0,
                          "rounds_met": sum(x >= 1.0 for x in ratios), "met": statistics.median(ratios) >= 1.0})

    out = {"script": "scripts/bench/decode_vs_llamacpp.py", "started_utc": started,
           "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "argv": sys.argv[1:], "threads": args.threads, "rounds": args.rounds, "repeats": args.repeats,
           "kvlab_kv_dtype": args.kv_dtype, "llama_kv_type": args.llama_kv_type, "llama_flash_attn": args.llama_flash_attn,
           "git_commit": subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
           "kvlab_sha256": sha256(args.kvlab), "models": {p: {"path": os.path.relpath(files[p], REPO), "sha256": sha256(files[p])}
                                                         for p in pairs},
           "table": table, "round_runs": rounds}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"\n| pair | metric | KVLab tok/s (median, range) | llama.cpp tok/s | ratio (median, range) | target | met (rounds) |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        k, l, q = row["kvlab"], row["llama_cpp"], row["ratio"]
        met = "" if row["target"] is None else f"{'yes' if row['met'] else 'no'} ({row['rounds_met']}/{len(q['values'])})"
        tgt = "" if row["target"] is None else f"≥ {row['target']:.1f}x"
        print(f"| {row['pair']} | {row['metric']} | {k['median']:.1f} ({k['min']:.1f}–{k['max']:.1f}) | "
              f"{l['median']:.1f} ({l['min']:.1f}–{l['max']:.1f}) | {q['median']:.2f}x ({q['min']:.2f}–{q['max']:.2f}) | {tgt} | {met} |")
    print(f"\nwrote {os.path.relpath(args.out, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
