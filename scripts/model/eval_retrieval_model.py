#!/usr/bin/env python3
"""Measure models/kvlab-retrieval with transformers (eager attention, float32, greedy).

Checks, each over seeded samples (seed printed in the log):
  * tokenizer.json loads with `tokenizers` and reproduces the task rendering;
  * passkey accuracy with the full cache at several context lengths, needle depths
    spread over [0, 1] (linspace), keys uniform in 1..50000; the prompt is prefilled
    and the answer greedy-decoded with the KV cache (model.generate);
  * the needle-in-a-haystack grid (depths linspace(0, 1, 10) x lengths);
  * the same with the weights rounded to float16 (computation still float32);
  * restricted attention (applied to every query row, prefill and decode, every head):
      - streaming: keys j < 4 (sinks) or j > pos - n/8 (recent window), n = prompt length
      - oracle top-k: per head and query, only the n/8 keys with the largest q.k score
  * attention diagnostics: the pointer head's weight on the needle at the answer step
    and the smallest top1 - top2 logit margin over answer tokens;
  * KV sharing without retraining: a layer using an earlier layer's K/V (CLA style) and
    GQA -> MQA pooling of the KV projections (both expected to break the circuit);
  * long contexts (8192 and 16000 tokens) with sdpa attention (eager's score matrices
    would not fit in memory);
  * KVLab's Swift decoder (.build/release/kvlab generate, when built): greedy ids and
    prompt logits against transformers.

Prompts are rendered exactly as KVLab's Swift task generator does (retrieval_tasks.Renderer).

Run:  python3 scripts/model/eval_retrieval_model.py [--model DIR] [--log FILE [--append]]
                                                    [--quick] [--sections a,b,...]
"""

import argparse
import io
import json
import os
import platform
import random
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import retrieval_tasks as T  # noqa: E402

EVAL_SEED = 1234

# ----------------------------------------------------------------- restricted attention
RESTRICT = {"mode": None, "n": None}


def restricted_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    from transformers.models.llama.modeling_llama import repeat_kv
    key_states = repeat_kv(key, module.num_key_value_groups)
    value_states = repeat_kv(value, module.num_key_value_groups)
    scores = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    q_len, k_len = scores.shape[-2], scores.shape[-1]
    qpos = torch.arange(k_len - q_len, k_len).view(-1, 1)
    kpos = torch.arange(k_len).view(1, -1)
    allowed = kpos <= qpos
    mode, n = RESTRICT["mode"], RESTRICT["n"]
    budget = max(1, n // 8) if n else None
    if mode == "streaming":
        allowed = allowed & ((kpos < 4) | (kpos > qpos - budget))
    neg = torch.finfo(scores.dtype).min
    scores = scores.masked_fill(~allowed, neg)
    if mode == "topk" and k_len > budget:
        thr = torch.topk(scores, budget, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < thr, neg)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights, value_states).transpose(1, 2).contiguous()
    return out, weights


# ----------------------------------------------------------------- KV sharing
SHARE = {"map": {}}   # layer -> the layer whose K/V it uses (cross-layer sharing, CLA style)
_SAVED_KV = {}


def shared_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Eager attention where a layer may use an earlier layer's (full, post-RoPE) K and V."""
    from transformers.models.llama.modeling_llama import eager_attention_forward
    li = module.layer_idx
    _SAVED_KV[li] = (key, value)
    if li in SHARE["map"]:
        key, value = _SAVED_KV[SHARE["map"][li]]
    return eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout, **kwargs)


def pool_kv_heads(model, layers):
    """GQA -> MQA on the weights (GQA paper): each layer's KV heads replaced by their mean."""
    with torch.no_grad():
        for li in layers:
            att = model.model.layers[li].self_attn
            kv, hd = model.config.num_key_value_heads, model.config.head_dim
            for proj in (att.k_proj, att.v_proj):
                w = proj.weight.view(kv, hd, -1)
                proj.weight.copy_(w.mean(0, keepdim=True).expand_as(w).reshape(kv * hd, -1))


def load_model(path, f16_weights=False, attn="eager"):
    from transformers import LlamaForCausalLM
    model = LlamaForCausalLM.from_pretrained(path, attn_implementation=attn, dtype=torch.float32)
    if f16_weights:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
    model.eval()
    return model


@torch.no_grad()
def greedy(model, prompt_ids, max_new):
    inp = torch.tensor([prompt_ids])
    out = model.generate(inp, attention_mask=torch.ones_like(inp), max_new_tokens=max_new,
                         do_sample=False, pad_token_id=T.EOS_ID, eos_token_id=None,
                         output_scores=True, return_dict_in_generate=True)
    new = out.sequences[0, len(prompt_ids):].tolist()
    margins = []
    for s in out.scores:
        top2 = torch.topk(s[0], 2).values
        margins.append(float(top2[0] - top2[1]))
    return new, margins


RENDER = None


def renderer():
    global RENDER
    if RENDER is None:
        RENDER = T.Renderer()
    return RENDER


def run_passkey(model, lengths, n, seed, max_new=10, restrict=None, log=print, tag=""):
    """n samples per length: keys uniform in 1..50000 (seeded), depths linspace(0, 1, n) shuffled."""
    rng = random.Random(seed)
    results = {}
    for length in lengths:
        keys = T.sample_keys(rng, n)
        depths = list(np.linspace(0, 1, n))
        rng.shuffle(depths)
        correct, rows, min_margin = 0, [], float("inf")
        t0 = time.time()
        for key, depth in zip(keys, depths):
            ids, q, pos = renderer().passkey(length, float(depth), key)
            RESTRICT["mode"], RESTRICT["n"] = restrict, len(ids)
            new, margins = greedy(model, ids, max_new)
            RESTRICT["mode"] = None
            got = T.first_integer([T.VOCAB[i] for i in new])
            ok = got == key
            correct += ok
            if ok:
                min_margin = min(min_margin, min(margins[:len(str(key)) + 1]))
            rows.append({"depth": round(float(depth), 3), "needle_pos": pos, "len": len(ids),
                         "key": key, "got": got, "ok": bool(ok)})
        acc = correct / n
        results[length] = {"acc": acc, "n": n, "rows": rows, "min_margin": min_margin}
        bands = {}
        for r in rows:
            rel = r["needle_pos"] / r["len"]
            b = "a:<.25" if rel < 0.25 else ("c:>.75" if rel > 0.75 else "b:.25-.75")
            bands.setdefault(b, []).append(r["ok"])
        band_txt = ", ".join(f"needle at {b[2:]} {sum(v)}/{len(v)}" for b, v in sorted(bands.items()))
        mm = f"{min_margin:.2f}" if correct else "-"
        log(f"  {tag}passkey n={length:5d}: {correct}/{n} = {acc:.1%}  [{band_txt}]  "
            f"min answer logit margin {mm}  ({time.time() - t0:.0f}s)")
        fails = [r for r in rows if not r["ok"]]
        if fails and correct:
            for r in fails[:5]:
                log(f"      fail: depth {r['depth']} needle at {r['needle_pos']}/{r['len']} key {r['key']} got {r['got']}")
    return results


def run_niah(model, lengths, max_new=30, restrict=None, log=print, tag=""):
    """Depths linspace(0, 1, 10) x lengths, the fixed needle of tasks.json, containment score."""
    depths = np.linspace(0, 1, 10)
    grid = {}
    want = T.ids(list(str(T.NIAH_KEY)))
    log(f"  {tag}NIAH grid, needle K={T.NIAH_KEY} (rows: context length; columns: depth 0.0 .. 1.0; "
        f"# solved, . failed)")
    for length in lengths:
        row = []
        for d in depths:
            ids, q, pos = renderer().niah(length, float(d))
            RESTRICT["mode"], RESTRICT["n"] = restrict, len(ids)
            new, _ = greedy(model, ids, max_new)
            RESTRICT["mode"] = None
            row.append(any(new[i:i + len(want)] == want for i in range(len(new))))
        grid[length] = row
        log(f"    {length:6d}  " + " ".join("#" if x else "." for x in row) + f"   {sum(row)}/10")
    total = sum(sum(r) for r in grid.values())
    log(f"    solved {total}/{10 * len(lengths)}")
    return grid


@torch.no_grad()
def diagnostics(model, log, length=4096, key=38291, depth=0.5):
    """Which key each head attends to most at the question's last token (heads with weight > 0.5)."""
    ids, q, pos = renderer().passkey(length, depth, key)
    out = model(torch.tensor([ids]), output_attentions=True)
    logits = out.logits[0, -1]
    top2 = torch.topk(logits, 2)
    log(f"  diagnostics: {len(ids)} tokens, depth {depth}, K={key}: needle starts at {pos}, "
        f"its first digit at {pos + 4}, second copy at {pos + 4 + len(str(key)) + 4}")
    log(f"    next-token argmax '{T.VOCAB[top2.indices[0]]}' logit {top2.values[0]:.2f}, "
        f"runner-up '{T.VOCAB[top2.indices[1]]}' {top2.values[1]:.2f}")
    for li, att in enumerate(out.attentions):
        a = att[0, :, -1, :]
        for h in range(a.shape[0]):
            w, j = torch.max(a[h], dim=0)
            if w > 0.5:
                log(f"    layer {li} head {h}: weight {w:.6f} on key {j.item()} ('{T.VOCAB[ids[j]]}')")


def tokenizer_check(path, log):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    key = 4071
    text = "\n".join([T.TASK_LINE, T.FILLER, T.NEEDLE.format(K=key), T.FILLER, T.QUESTION])
    enc = tok.encode(text)
    expect = ["<s>"] + T.TASK_TOKENS + T.FILLER_TOKENS + T.needle_tokens(key) + T.FILLER_TOKENS + T.QUESTION_TOKENS
    ok = enc.tokens == expect and enc.ids == T.ids(expect)
    log(f"  tokenizers {__import__('tokenizers').__version__}: tokenizer.json loads; "
        f"rendered prompt ({len(enc.ids)} tokens) matches the word-token rendering: {ok}")
    try:
        from transformers import AutoTokenizer
        at = AutoTokenizer.from_pretrained(path)
        ok2 = at(text)["input_ids"] == enc.ids
        log(f"  AutoTokenizer.from_pretrained: same ids: {ok2}")
    except Exception as e:  # noqa: BLE001
        log(f"  AutoTokenizer.from_pretrained failed: {e!r}")
        ok2 = False
    return ok and ok2


def swift_check(model, kvlab, model_dir, log):
    """Greedy ids and prompt logits of KVLab's Swift decoder (kvlab generate) against transformers."""
    import subprocess
    import tempfile
    import h5py
    for n, depth, key in [(1024, 0.37, 40823), (4096, 0.8, 7)]:
        ids, _, _ = renderer().passkey(n, depth, key)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "logits.h5")
            r = subprocess.run([kvlab, "generate", "--model", model_dir, "--prompt-ids", ",".join(map(str, ids)),
                                "--max-new-tokens", "10", "--threads", "1", "--logits-out", out],
                               capture_output=True, text=True, check=True)
            with h5py.File(out) as f:
                sw_logits = f["logits"][:]
        sw_ids = [int(x) for x in r.stdout.strip().split(",")]
        hf_ids, _ = greedy(model, ids, 10)
        with torch.no_grad():
            hf_logits = model(torch.tensor([ids])).logits[0].numpy()
        log(f"  {len(ids)} tokens, K={key}: same greedy ids {sw_ids == hf_ids} "
            f"({' '.join(T.VOCAB[i] for i in sw_ids)}); max |logit diff| over the prompt "
            f"{float(np.abs(sw_logits - hf_logits).max()):.2e} (max |logit| {float(np.abs(hf_logits).max()):.1f})")


SECTIONS = ["tokenizer", "full", "niah", "f16", "restricted", "sharing", "long", "swift"]
DEFAULT_SECTIONS = "tokenizer,full,niah,f16,restricted,sharing,long,swift"


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.abspath(os.path.join(here, "..", ".."))
    ap.add_argument("--model", default=os.path.join(root, "models", "kvlab-retrieval"))
    ap.add_argument("--log", default=None)
    ap.add_argument("--append", action="store_true", help="append to --log instead of replacing it")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sections", default=DEFAULT_SECTIONS, help=f"comma-separated subset of {SECTIONS}")
    ap.add_argument("--kvlab", default=os.path.join(root, ".build", "release", "kvlab"),
                    help="kvlab binary for the swift section")
    args = ap.parse_args()
    sections = args.sections.split(",")
    torch.set_num_threads(args.threads)
    buf = io.StringIO()

    def log(msg=""):
        print(msg, flush=True)
        buf.write(msg + "\n")

    import transformers
    from transformers import AttentionInterface
    AttentionInterface.register("kvlab_restricted", restricted_attention)
    AttentionInterface.register("kvlab_shared", shared_attention)
    t0 = time.time()
    log(f"kvlab-retrieval evaluation  (eval seed {EVAL_SEED}; sections {','.join(sections)})")
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}, "
        f"{args.threads} CPU threads, {time.strftime('%Y-%m-%d %H:%M:%S')}")
    files = {f: os.path.getsize(os.path.join(args.model, f)) for f in sorted(os.listdir(args.model))
             if os.path.isfile(os.path.join(args.model, f))}
    log("files: " + ", ".join(f"{k} {v:,} B" for k, v in files.items()))
    if "tokenizer" in sections:
        log("")
        log("[tokenizer]")
        tokenizer_check(args.model, log)

    n = 10 if args.quick else 50
    lengths = [1024, 2048] if args.quick else [1024, 2048, 4096]
    model = None
    if {"full", "niah", "swift"} & set(sections):
        model = load_model(args.model)
    if "full" in sections:
        log("")
        log("[full cache, float32 weights, eager attention]  LlamaForCausalLM.from_pretrained(..., "
            "attn_implementation='eager', dtype=float32)")
        log(f"  parameters: {sum(p.numel() for p in model.parameters()):,}")
        diagnostics(model, log, length=2048 if args.quick else 4096)
        run_passkey(model, lengths, n, EVAL_SEED, log=log)
    if "niah" in sections:
        log("")
        log("[needle in a haystack, full cache, float32, eager]")
        run_niah(model, [256, 512, 1024, 2048] + ([] if args.quick else [4096]), log=log)
    if "f16" in sections:
        log("")
        log("[full cache, weights rounded to float16 (computation in float32)]")
        m16 = load_model(args.model, f16_weights=True)
        run_passkey(m16, [1024] if args.quick else [1024, 4096], 10 if args.quick else 20, EVAL_SEED + 2,
                    log=log, tag="f16 ")
        del m16
    if "restricted" in sections:
        log("")
        rn = 10 if args.quick else 20
        rlengths = [1024] if args.quick else [1024, 2048]
        log("[restricted attention, budget n/8 keys per head; applied to every query row]")
        mr = load_model(args.model, attn="kvlab_restricted")
        log("  streaming (4 sink tokens + most recent n/8 positions):")
        run_passkey(mr, rlengths, rn, EVAL_SEED + 3, restrict="streaming", log=log, tag="streaming ")
        log("  oracle top-k (per head and query, the n/8 keys with the largest q.k):")
        run_passkey(mr, rlengths, rn, EVAL_SEED + 3, restrict="topk", log=log, tag="top-k ")
        del mr
    if "sharing" in sections:
        log("")
        log("[KV sharing without retraining, passkey n=1024, 10 samples each]")
        ms = load_model(args.model, attn="kvlab_shared")
        for mp in [{1: 0}, {2: 1}, {3: 2}, {1: 0, 3: 2}]:
            SHARE["map"] = mp
            desc = ", ".join(f"layer {d} uses layer {s_}'s KV" for d, s_ in mp.items())
            run_passkey(ms, [1024], 10, EVAL_SEED + 6, log=log, tag=f"cross-layer ({desc}) ")
        SHARE["map"] = {}
        del ms
        for layers in [[0], [1], [2], [3], [0, 1, 2, 3]]:
            mp_ = load_model(args.model)
            pool_kv_heads(mp_, layers)
            run_passkey(mp_, [1024], 10, EVAL_SEED + 6, log=log, tag=f"KV heads pooled (MQA) in layers {layers} ")
            del mp_
    if "long" in sections and not args.quick:
        log("")
        log("[long contexts, full cache, float32, sdpa attention (eager would need 8-32 GB of scores)]")
        ml = load_model(args.model, attn="sdpa")
        run_passkey(ml, [8192], 6, EVAL_SEED + 4, log=log, tag="sdpa ")
        run_passkey(ml, [16000], 3, EVAL_SEED + 5, log=log, tag="sdpa ")
        del ml
    if "swift" in sections:
        log("")
        log(f"[KVLab Swift decoder: {args.kvlab} generate vs transformers eager float32]")
        if os.path.exists(args.kvlab):
            swift_check(model, args.kvlab, args.model, log)
        else:
            log("  skipped: binary not found")
    log("")
    log(f"total time {time.time() - t0:.0f}s")
    if args.log:
        with open(args.log, "a" if args.append else "w") as f:
            if args.append:
                f.write("\n")
            f.write(buf.getvalue())


if __name__ == "__main__":
    main()
