#!/usr/bin/env python3
"""Small GGUF seed files for the FuzzGGUF target, written with llama.cpp's own `gguf` Python
package (PyPI `gguf`): every metadata value type, nested arrays, tensors of several ggml types,
a non-default alignment. Run by scripts/fuzz.sh into the corpus directory:

    python3 fuzz/seeds/make_gguf_seeds.py OUT_DIR
"""
import os, sys
import numpy as np
import gguf

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def write(name, alignment=None, tensors=True, meta=True):
    w = gguf.GGUFWriter(os.path.join(out, name), "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    if meta:
        w.add_block_count(2)
        w.add_context_length(128)
        w.add_embedding_length(8)
        w.add_head_count(2)
        w.add_rope_freq_base(10000.0)
        w.add_uint8("t.u8", 7); w.add_int8("t.i8", -7); w.add_uint16("t.u16", 700); w.add_int16("t.i16", -700)
        w.add_uint32("t.u32", 70000); w.add_int32("t.i32", -70000); w.add_uint64("t.u64", 7 << 40); w.add_int64("t.i64", -(7 << 40))
        w.add_float32("t.f32", 0.5); w.add_float64("t.f64", -2.25); w.add_bool("t.bool", True)
        w.add_string("t.str", "héllo")
        w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "a", "b", "▁c"])
        w.add_array("tokenizer.ggml.scores", [0.0, -1.0, -2.5, -3.0, -4.0])
        w.add_array("tokenizer.ggml.token_type", [3, 3, 1, 1, 1])
        w.add_array("t.nested", [[1, 2], [3]])
    if tensors:
        w.add_tensor("token_embd.weight", np.arange(40, dtype=np.float32).reshape(5, 8))
        w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float16))
        q8 = gguf.quants.quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32), gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor("blk.0.attn_q.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        q41 = gguf.quants.quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32), gguf.GGMLQuantizationType.Q4_1)
        w.add_tensor("blk.0.attn_k.weight", q41, raw_dtype=gguf.GGMLQuantizationType.Q4_1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


write("full.gguf")
write("aligned64.gguf", alignment=64)
write("meta_only.gguf", tensors=False)
write("tensors_only.gguf", meta=False)
print("wrote", sorted(os.listdir(out)))
