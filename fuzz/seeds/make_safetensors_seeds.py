#!/usr/bin/env python3
"""Small safetensors seed files for the FuzzSafeTensors target, written by the reference library
(PyPI `safetensors`): each dtype KVLab reads, metadata, scalar and empty tensors. Run by
scripts/fuzz.sh into the corpus directory:

    python3 fuzz/seeds/make_safetensors_seeds.py OUT_DIR
"""
import os, sys
import numpy as np
from safetensors.numpy import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
save_file({"model.norm.weight": rng.standard_normal(8).astype(np.float32),
           "model.embed_tokens.weight": rng.standard_normal((4, 8)).astype(np.float32)},
          os.path.join(out, "f32.safetensors"), metadata={"format": "pt"})
save_file({"w": rng.standard_normal((3, 5)).astype(np.float16), "b": np.array([1.5], dtype=np.float16)},
          os.path.join(out, "f16.safetensors"))
bf16 = (rng.standard_normal(6).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
save_file({"bf": bf16}, os.path.join(out, "bf16_as_u16.safetensors"))   # dtype U16: an unsupported dtype
with open(os.path.join(out, "bf16_as_u16.safetensors"), "rb") as f:
    data = f.read()
n = int.from_bytes(data[:8], "little")
header = data[8:8 + n].replace(b'"U16"', b'"BF16"')
open(os.path.join(out, "bf16.safetensors"), "wb").write(len(header).to_bytes(8, "little") + header + data[8 + n:])
save_file({"scalar": np.array(2.0, dtype=np.float32), "empty": np.zeros((0, 4), dtype=np.float32)},
          os.path.join(out, "scalar_empty.safetensors"))
print("wrote", sorted(os.listdir(out)))
