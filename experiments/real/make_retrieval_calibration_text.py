#!/usr/bin/env python3
"""Calibration text for models/kvlab-retrieval (its 128-word vocabulary): passkey-style documents in
the model's own wording (tasks.json) with seeded keys (seed 1234, independent of the evaluation's task
seeds). Used by `kvlab calibrate svd-heads` for the 2:1 comparison in docs/heads.md.

    python3 experiments/real/make_retrieval_calibration_text.py [--docs 24] [--max-words 950] [--out FILE]

Default: 24 documents of 150..950 filler words (~14K words) -> results/real/retrieval_calibration.txt.
The smaller text of docs/heads.md's first attempt: --docs 12 --max-words 450."""
import argparse
import json
import random
from pathlib import Path

root = Path(__file__).resolve().parents[2]
ap = argparse.ArgumentParser()
ap.add_argument("--docs", type=int, default=24)
ap.add_argument("--max-words", type=int, default=950)
ap.add_argument("--out", default=str(root / "results/real/retrieval_calibration.txt"))
a = ap.parse_args()
style = json.loads((root / "models/kvlab-retrieval/tasks.json").read_text())
p = style["passkey"]
rng = random.Random(1234)
filler = style["filler"].split()
docs = []
for _ in range(a.docs):
    key = " ".join(str(rng.randint(1, 50000)))
    n = rng.randint(150, a.max_words)
    cut = rng.randint(0, n)
    words = [filler[i % len(filler)] for i in range(n)]
    needle = p["needle"].replace("{key}", key)
    docs.append("\n".join([p["task"], " ".join(words[:cut]), needle, " ".join(words[cut:]), p["question"] + " " + key + " ."]))
out = Path(a.out)
out.write_text("\n".join(docs) + "\n")
print("wrote", out, len(out.read_text().split()), "words")
