#!/usr/bin/env python3
"""Build models/kvlab-retrieval: a small Llama checkpoint whose attention really retrieves.

The weights are constructed analytically (compiled-transformer style); only the
language-model part of the unembedding (the n-gram readout used at
non-answer positions) is fitted, by a convex logistic regression on seeded
passkey and needle prompts. Nothing is trained by gradient descent through attention.

Architecture: LlamaForCausalLM, 4 layers, hidden 256, 8 query heads and 2 KV
heads of head_dim 64 (GQA), SwiGLU MLP with intermediate 128, RMSNorm,
RoPE (rotate_half layout) with rope_theta 1e10, vocab 128 word tokens, untied
lm_head, max_position_embeddings 16384.

Residual stream (dedicated subspaces; every block is one-hot with a "none"
slot, so the RMS of the residual is the same at every position and each
RMSNorm weight is set to that constant, making every norm an identity):

  CONST   1   constant 8 (bias source for every projection)
  CLASS  15   token class: none bos digit is key dot it grass sky sun green blue
              yellow go again (the last eight only serve the n-gram readout)
  ANS    12   answer symbol: none 0..9 dot
  ID     64   token identity (57 core tokens one-hot; all other words share "other")
  LAGk   15   CLASS of the token k positions back, k = 1..6        (layer 0 attention)
  U       7   offset after "key is": u(p)=k if tok[p-k]="is", tok[p-k-1]="key"
              and tok[p-k+1..p] are digits (k = 0..5), else none  (layer 0 MLP)
  W       7   offset after "it .", same rule with "." and "it"     (layer 0 MLP)
  SU, SW  7   U and W of the previous position                      (layer 1 attention)
  A1     12   ANS symbol retrieved by pointer head P1               (layer 2 attention)
  A2     11   digit retrieved by pointer head P2                    (layer 3 attention)
  FINAL  12   the answer symbol both pointer heads agree on         (layer 3 MLP)

The circuit:
  layer 0 attn  six previous-token heads (lags 1..6): constant query and key
                built from RoPE's frequencies so the score peaks at distance k
                (amplitudes from a linear program: every other distance up to
                16384 scores at least 25 lower); values copy CLASS into LAGk.
                KV head 0 serves lags 1-3, KV head 1 lags 4-6 (different value layout).
  layer 0 MLP   AND gates (SwiGLU used as a sharp ReLU) compute U and W.
  layer 1 attn  two lag-1 heads: KV head 0 copies U -> SU, KV head 1 copies W -> SW.
  layer 2 attn  P1: query U(p), key SU(j) on near-zero-frequency RoPE dims
                (score 50 on a match), sink on <s> (score 25), value ANS -> A1.
                At the question's final "is" u=0, and the only key with SU=0 is
                the needle's first digit; after copying i digits u=i and the
                target is the needle's (i+1)-th digit, and finally its ".".
  layer 3 attn  P2: same query, key SW: points into the needle's second copy
                of K ("Remember it. K is the pass key."), value digits -> A2.
  layer 3 MLP   agreement: FINAL = d when A1 = d and A2 = d (digits), FINAL = "."
                when A1 = "." and A2 = none (the second copy is followed by "is"),
                AND gates again. Losing either pointer head loses the answer.
  lm_head       logits = 30 * FINAL on digits/"." plus a fitted
                log-linear n-gram readout from ID, ANS, CLASS, LAG1, LAG2.
  unused        query heads not listed above have zero weights; the KV heads no
                query head reads (layer 2 KV1, layer 3 KV0) hold positional keys
                and CLASS values (not zeros), with zero o_proj.

Run:  python3 scripts/model/make_retrieval_model.py [--out models/kvlab-retrieval] [--no-eval]
It writes config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
tasks.json, circuit.json and BUILD_LOG.txt (the build facts), then (unless --no-eval) runs
eval_retrieval_model.py, which appends its measurements to BUILD_LOG.txt.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import retrieval_tasks as T  # noqa: E402

SEED = 20240611          # seeds the corpus used to fit the n-gram readout
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTER, LAYERS = 256, 8, 2, 64, 128, 4
ROPE_THETA = 1e10
MAX_POS = 16384
C = 8.0                  # value of the constant dimension
POS_MARGIN = 25.0        # previous-token heads: score gap to every other distance
MATCH, SINK = 50.0, 25.0  # pointer heads: score on a match, on <s>
GATE = 40.0              # SwiGLU gate gain (silu(GATE*z) ~ GATE*relu(z))
ANSWER_LOGIT = 30.0

CLASSES = ["none", "bos", "digit", "is", "key", "dot", "it",
           "grass", "sky", "sun", "green", "blue", "yellow", "go", "again"]
ANS_SYMBOLS = ["none"] + T.DIGITS + ["."]
A2_SYMBOLS = ["none"] + T.DIGITS
NLAGS = 6
NOFF = 6  # offsets 0..5


def token_class(tok):
    if tok == "<s>":
        return "bos"
    if tok in T.DIGITS:
        return "digit"
    if tok == ".":
        return "dot"
    return tok if tok in CLASSES else "none"


class Layout:
    """Named blocks of the residual stream."""

    def __init__(self):
        self.blocks, self.n = {}, 0

    def add(self, name, size):
        self.blocks[name] = (self.n, size)
        self.n += size

    def __call__(self, name, k=0):
        start, size = self.blocks[name]
        assert 0 <= k < size, (name, k)
        return start + k


L = Layout()
L.add("CONST", 1)
L.add("CLASS", len(CLASSES))
L.add("ANS", len(ANS_SYMBOLS))
L.add("ID", 64)
for k in range(1, NLAGS + 1):
    L.add(f"LAG{k}", len(CLASSES))
for name in ["U", "W", "SU", "SW"]:
    L.add(name, NOFF + 1)  # slot 0 = none, slot 1+k = offset k
L.add("A1", len(ANS_SYMBOLS))
L.add("A2", len(A2_SYMBOLS))
L.add("FINAL", len(ANS_SYMBOLS))
assert L.n <= HIDDEN, L.n


def id_slot(token_id):
    return token_id if token_id < T.N_CORE else 63


def rope_inv_freq():
    import torch
    # same arithmetic as transformers' default RoPE (float32)
    return (1.0 / (ROPE_THETA ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.int64).float() / HEAD_DIM))).double().numpy()


def positional_amplitudes(max_len=MAX_POS, lo=-8):
    """LP: weights w_i >= 0 (sum 1) on RoPE pairs maximizing the minimum over distances
    d != 0 in [lo, max_len] of sum_i w_i (1 - cos(theta_i d)). Returns (w, margin per unit)."""
    from scipy.optimize import linprog
    th = rope_inv_freq()
    h = len(th)
    deltas = np.array([d for d in range(lo, max_len + 1) if d != 0], dtype=np.float64)
    M = 1.0 - np.cos(np.outer(deltas, th))
    c = np.zeros(h + 1)
    c[-1] = -1.0
    A = np.hstack([-M, np.ones((len(deltas), 1))])
    Aeq = np.zeros((1, h + 1))
    Aeq[0, :h] = 1.0
    r = linprog(c, A_ub=A, b_ub=np.zeros(len(deltas)), A_eq=Aeq, b_eq=[1.0],
                bounds=[(0, None)] * h + [(None, None)], method="highs")
    assert r.status == 0, r.message
    return r.x[:h], r.x[-1]


# slow RoPE pairs used for content matching (rotation < 3e-4 rad over 16K positions)
SLOW_PAIRS = list(range(25, 32))


def build_weights():
    """Return a dict of numpy float64 arrays keyed by HF Llama parameter names."""
    D, H, KV, hd, I = HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTER
    half = hd // 2
    W = {}
    th = rope_inv_freq()
    pos_w, pos_unit = positional_amplitudes()
    pos_scale = POS_MARGIN / pos_unit          # total peak score of a positional head
    sqrt_hd = math.sqrt(hd)

    # ---- embeddings
    E = np.zeros((T.VOCAB_SIZE, D))
    for tid, tok in enumerate(T.VOCAB):
        E[tid, L("CONST")] = C
        E[tid, L("CLASS", CLASSES.index(token_class(tok)))] = 1.0
        E[tid, L("ANS", ANS_SYMBOLS.index(tok) if tok in ANS_SYMBOLS else 0)] = 1.0
        E[tid, L("ID", id_slot(tid))] = 1.0
    W["model.embed_tokens.weight"] = E

    # number of unit one-hot blocks present at each norm site (for the constant RMS)
    def rms(nblocks):
        return math.sqrt((C * C + nblocks) / D)
    n_embed = 3

    def zeros_layer():
        return {
            "q": np.zeros((H * hd, D)), "k": np.zeros((KV * hd, D)), "v": np.zeros((KV * hd, D)),
            "o": np.zeros((D, H * hd)), "gate": np.zeros((I, D)), "up": np.zeros((I, D)),
            "down": np.zeros((D, I)),
        }

    layers = [zeros_layer() for _ in range(LAYERS)]
    norms_in = [n_embed, n_embed + NLAGS + 2, n_embed + NLAGS + 4, n_embed + NLAGS + 5]
    norms_post = [n_embed + NLAGS, n_embed + NLAGS + 4, n_embed + NLAGS + 5, n_embed + NLAGS + 6]
    n_final = n_embed + NLAGS + 7

    # positional key: pair i real part = kappa_i; query for lag l rotates by -l*theta_i
    kappa = np.sqrt(sqrt_hd * pos_scale * pos_w)

    def positional_key(lay, kvh):
        for i in range(half):
            lay["k"][kvh * hd + i, L("CONST")] = kappa[i] / C

    def positional_query(lay, head, lag):
        for i in range(half):
            lay["q"][head * hd + i, L("CONST")] = kappa[i] * math.cos(lag * th[i]) / C
            lay["q"][head * hd + half + i, L("CONST")] = -kappa[i] * math.sin(lag * th[i]) / C

    def copy_value(lay, kvh, head, src_block, dst_block, offset=0, mapping=None):
        """value dims offset.. of kv head hold src_block; head's o_proj writes them to dst_block."""
        s0, n = L.blocks[src_block]
        for a in range(n):
            lay["v"][kvh * hd + offset + a, s0 + a] = 1.0
            b = a if mapping is None else mapping[a]
            if b is not None:
                lay["o"][L(dst_block, b), head * hd + offset + a] = 1.0

    # ---- layer 0: previous-token heads (lags 1..6) + AND-gate MLP
    lay = layers[0]
    positional_key(lay, 0)
    positional_key(lay, 1)
    for lag in range(1, NLAGS + 1):
        kvh = 0 if lag <= 3 else 1
        head = (lag - 1) if kvh == 0 else 4 + (lag - 4)
        positional_query(lay, head, lag)
        copy_value(lay, kvh, head, "CLASS", f"LAG{lag}", offset=0 if kvh == 0 else 20)

    unit = [0]

    def and_gate(lay, conds, out_plus, out_minus):
        """Unit = 1 iff all residual dims in conds are 1 (each 0/1); writes +1/-1."""
        u = unit[0]
        unit[0] += 1
        for d in conds:
            lay["gate"][u, d] += GATE
        lay["gate"][u, L("CONST")] += -GATE * (len(conds) - 0.5) / C
        lay["up"][u, L("CONST")] = (2.0 / GATE) / C
        lay["down"][out_plus, u] += 1.0
        if out_minus is not None:
            lay["down"][out_minus, u] -= 1.0

    def always_on(lay, out):
        u = unit[0]
        unit[0] += 1
        lay["gate"][u, L("CONST")] = 20.0 / C
        lay["up"][u, L("CONST")] = 1.0 / 20.0 / C   # silu(20) = 20 (to 4e-8)
        lay["down"][out, u] = 1.0

    def cls_at(lag, name):
        return L("CLASS" if lag == 0 else f"LAG{lag}", CLASSES.index(name))

    unit[0] = 0
    for block, anchor, before in [("U", "is", "key"), ("W", "dot", "it")]:
        always_on(lay, L(block, 0))
        for k in range(NOFF):
            conds = [cls_at(m, "digit") for m in range(k)] + [cls_at(k, anchor), cls_at(k + 1, before)]
            and_gate(lay, conds, L(block, 1 + k), L(block, 0))
    n_units0 = unit[0]

    # ---- layer 1: shift U, W by one position
    lay = layers[1]
    positional_key(lay, 0)
    positional_key(lay, 1)
    positional_query(lay, 0, 1)
    positional_query(lay, 4, 1)
    copy_value(lay, 0, 0, "U", "SU")
    copy_value(lay, 1, 4, "W", "SW")

    # ---- pointer heads
    g = math.sqrt(MATCH * sqrt_hd)   # query and key weight on a matching pair
    s = math.sqrt(SINK * sqrt_hd)

    def pointer(lay, kvh, head, key_block, value_map, dst_block):
        for k in range(NOFF):
            dim = SLOW_PAIRS[k]
            lay["q"][head * hd + dim, L("U", 1 + k)] = g
            lay["k"][kvh * hd + dim, L(key_block, 1 + k)] = g
        sink = SLOW_PAIRS[NOFF]
        lay["q"][head * hd + sink, L("CONST")] = s / C
        lay["k"][kvh * hd + sink, L("CLASS", CLASSES.index("bos"))] = s
        copy_value(lay, kvh, head, "ANS", dst_block, mapping=value_map)

    pointer(layers[2], 0, 0, "SU", None, "A1")
    a2_map = [0] + list(range(1, 11)) + [0]          # ANS none/0..9/dot -> A2 none/0..9/none
    pointer(layers[3], 1, 4, "SW", a2_map, "A2")

    # ---- the KV heads no query head reads (layer 2 KV1, layer 3 KV0) are not left zero:
    # positional keys and CLASS values, so that a policy that pools or merges KV heads or
    # layers meets ordinary vectors there (never 0/0); their query heads and o_proj are zero.
    for li, kvh in [(2, 1), (3, 0)]:
        positional_key(layers[li], kvh)
        s0, n = L.blocks["CLASS"]
        for a_ in range(n):
            layers[li]["v"][kvh * hd + a_, s0 + a_] = 1.0

    # ---- layer 3 MLP: FINAL = the symbol P1 and P2 agree on
    lay = layers[3]
    unit[0] = 0
    always_on(lay, L("FINAL", 0))
    for d in range(10):
        and_gate(lay, [L("A1", 1 + d), L("A2", 1 + d)], L("FINAL", 1 + d), L("FINAL", 0))
    and_gate(lay, [L("A1", 11), L("A2", 0)], L("FINAL", 11), L("FINAL", 0))

    # ---- write HF parameters; norm weights = the constant RMS at that site
    for li, lay in enumerate(layers):
        p = f"model.layers.{li}."
        W[p + "self_attn.q_proj.weight"] = lay["q"]
        W[p + "self_attn.k_proj.weight"] = lay["k"]
        W[p + "self_attn.v_proj.weight"] = lay["v"]
        W[p + "self_attn.o_proj.weight"] = lay["o"]
        W[p + "mlp.gate_proj.weight"] = lay["gate"]
        W[p + "mlp.up_proj.weight"] = lay["up"]
        W[p + "mlp.down_proj.weight"] = lay["down"]
        W[p + "input_layernorm.weight"] = np.full(D, rms(norms_in[li]))
        W[p + "post_attention_layernorm.weight"] = np.full(D, rms(norms_post[li]))
    W["model.norm.weight"] = np.full(D, rms(n_final))
    W["lm_head.weight"] = np.zeros((T.VOCAB_SIZE, D))
    info = {"positional_margin_per_unit": pos_unit, "positional_peak_score": pos_scale,
            "positional_pair_weights": [round(float(x), 4) for x in pos_w],
            "mlp0_units": n_units0, "residual_dims_used": L.n}
    return W, info


# ------------------------------------------------------------------ readout
READOUT_BLOCKS = ["CONST", "CLASS", "ANS", "ID", "LAG1", "LAG2"]


def readout_features(tokens):
    """Exact values of the readout blocks for a token list (what the circuit computes)."""
    n = len(tokens)
    X = np.zeros((n, L.n))
    for p, tok in enumerate(tokens):
        tid = T.TOKEN_ID.get(tok, T.UNK_ID)
        X[p, L("CONST")] = C
        X[p, L("CLASS", CLASSES.index(token_class(tok)))] = 1
        X[p, L("ANS", ANS_SYMBOLS.index(tok) if tok in ANS_SYMBOLS else 0)] = 1
        X[p, L("ID", id_slot(tid))] = 1
        for lag in (1, 2):
            src = tokens[p - lag] if p - lag >= 0 else "<s>"
            X[p, L(f"LAG{lag}", CLASSES.index(token_class(src)))] = 1
    cols = [i for b in READOUT_BLOCKS for i in range(L.blocks[b][0], L.blocks[b][0] + L.blocks[b][1])]
    return X[:, cols], cols


def fit_readout(seed=SEED, n_docs=60, l2=1e-3, clip=8.0):
    """Log-linear n-gram readout fitted on seeded passkey documents (answer positions
    excluded: there the pointer heads decide). Returns (V x len(cols)) weights, cols, stats."""
    import torch
    rng = np.random.default_rng(seed)
    import random
    prng = random.Random(seed)
    Xs, Ys = [], []
    r = T.Renderer()
    for i in range(n_docs):
        length = int(rng.integers(80, 400))
        depth = float(rng.random())
        key = prng.randint(T.KEY_MIN, T.KEY_MAX)
        if i % 4 == 3:
            ids, q, _ = r.niah(length, depth)
            key = T.NIAH_KEY
        else:
            ids, q, _ = r.passkey(length, depth, key)
        toks = [T.VOCAB[t] for t in ids] + T.answer_tokens(key)
        X, cols = readout_features(toks)
        ans_start = len(ids) - 1   # the final "is": from here on the pointer heads decide
        keep = list(range(ans_start))
        Xs.append(X[keep])
        Ys.extend(T.TOKEN_ID[toks[p + 1]] for p in keep)
    X = torch.tensor(np.concatenate(Xs), dtype=torch.float64)
    Y = torch.tensor(Ys)
    Wt = torch.zeros((T.VOCAB_SIZE, X.shape[1]), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([Wt], lr=1, max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(X @ Wt.T, Y) + l2 * (Wt ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        Wc = Wt.clamp(-clip, clip)
        logits = X @ Wc.T
        ce = torch.nn.functional.cross_entropy(logits, Y).item()
        acc = (logits.argmax(1) == Y).double().mean().item()
        max_logit = logits.abs().max().item()
    return Wc.numpy(), cols, {"ce": ce, "top1": acc, "max_abs_logit": max_logit, "positions": len(Ys)}


def set_lm_head(W, readout, cols):
    H = W["lm_head.weight"]
    H[:, cols] = readout
    # answer readout: digits and "." from FINAL
    for d in range(10):
        H[T.TOKEN_ID[str(d)], L("FINAL", 1 + d)] += ANSWER_LOGIT
    H[T.DOT_ID, L("FINAL", 11)] += ANSWER_LOGIT


# ------------------------------------------------------------------ save
def save(out, W, info, readout_stats):
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig
    os.makedirs(out, exist_ok=True)
    cfg = LlamaConfig(
        vocab_size=T.VOCAB_SIZE, hidden_size=HIDDEN, intermediate_size=INTER,
        num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM, hidden_act="silu", max_position_embeddings=MAX_POS,
        rms_norm_eps=1e-6, rope_theta=ROPE_THETA, tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False, bos_token_id=T.BOS_ID, eos_token_id=T.EOS_ID,
        pad_token_id=None)
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.dtype = "float32"
    cfg.save_pretrained(out)
    gen = os.path.join(out, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    tensors = {k: torch.tensor(v, dtype=torch.float32).contiguous() for k, v in W.items()}
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    tok = T.make_tokenizer()
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
                   "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": MAX_POS,
                   "add_bos_token": True, "clean_up_tokenization_spaces": False}, f, indent=2)
    with open(os.path.join(out, "tasks.json"), "w") as f:
        json.dump(T.tasks_json(), f, indent=1)
    layout = {k: {"start": v[0], "size": v[1]} for k, v in L.blocks.items()}
    with open(os.path.join(out, "circuit.json"), "w") as f:
        json.dump({"residual_layout": layout, "classes": CLASSES, "ans_symbols": ANS_SYMBOLS,
                   "constants": {"C": C, "pos_margin": POS_MARGIN, "match": MATCH, "sink": SINK,
                                 "gate": GATE, "answer_logit": ANSWER_LOGIT, "rope_theta": ROPE_THETA,
                                 "slow_pairs": SLOW_PAIRS},
                   "build": info, "readout_fit": readout_stats}, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.abspath(os.path.join(here, "..", ".."))
    ap.add_argument("--out", default=os.path.join(root, "models", "kvlab-retrieval"))
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    W, info = build_weights()
    readout, cols, stats = fit_readout()
    set_lm_head(W, readout, cols)
    save(args.out, W, info, stats)
    lines = [
        "kvlab-retrieval build log",
        f"built by scripts/model/make_retrieval_model.py on {time.strftime('%Y-%m-%d %H:%M:%S')} "
        f"in {time.time() - t0:.1f}s (readout corpus seed {SEED})",
        f"config: {LAYERS} layers, hidden {HIDDEN}, {HEADS} query heads, {KV_HEADS} KV heads, head_dim {HEAD_DIM}, "
        f"intermediate {INTER}, vocab {T.VOCAB_SIZE}, rope_theta {ROPE_THETA:g}, max positions {MAX_POS}",
        f"construction: {json.dumps(info)}",
        f"n-gram readout fit (non-answer positions of the seeded corpus): {json.dumps(stats)}",
        "",
    ]
    print("\n".join(lines))
    log_path = os.path.join(args.out, "BUILD_LOG.txt")
    with open(log_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    if not args.no_eval:
        subprocess.run([sys.executable, os.path.join(here, "eval_retrieval_model.py"),
                        "--model", args.out, "--log", log_path, "--append"], check=True)


if __name__ == "__main__":
    main()
