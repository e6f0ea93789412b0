#!/usr/bin/env python3
"""Writes F16 and F32 copies of a quantized GGUF model: every quantized tensor dequantized with
gguf-py (gguf.quants.dequantize, the numpy port of ggml's dequantize_row_*), then stored as F16
(rounded) or F32; F32 tensors (norms) stay F32, as llama.cpp's converter keeps them. Metadata
(tokenizer included) is copied and general.file_type set (0 = all F32, 1 = mostly F16), so
llama.cpp and KVLab load the copies like any converted model.

Used by scripts/bench/decode_vs_llamacpp.py for the F16 comparison and llama.cpp's F32 prefill.

    python3 scripts/bench/make_dense_gguf.py models/SmolLM2-135M-Instruct.Q4_1.gguf
    # -> models/SmolLM2-135M-Instruct.F16.gguf, models/SmolLM2-135M-Instruct.F32.gguf
"""
import argparse
import os
import sys

import numpy as np
import gguf


def convert(src: str, dst: str, dtype: str) -> None:
    reader = gguf.GGUFReader(src, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    file_type = 1 if dtype == "F16" else 0
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            value = file_type
        writer.add_key_value(field.name, value, val_type, sub_type=sub_type)
    arrays = []
    for t in reader.tensors:
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            data = np.array(t.data, dtype=np.float32)
        else:
            data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            if dtype == "F16":
                data = data.astype(np.float16)
        # GGUFReader gives quantized data as raw bytes; the dequantized shape is the logical one.
        shape = [int(x) for x in reversed(t.shape.tolist())]
        data = data.reshape(shape)
        arrays.append((t.name, data))
        qtype = gguf.GGMLQuantizationType.F16 if data.dtype == np.float16 else gguf.GGMLQuantizationType.F32
        writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes, qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data in arrays:
        writer.write_tensor_data(data)
    writer.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="a quantized .gguf file")
    ap.add_argument("--types", default="F16,F32", help="comma-separated: F16, F32")
    ap.add_argument("--force", action="store_true", help="overwrite existing outputs")
    args = ap.parse_args()
    base = args.source[:-len(".gguf")] if args.source.endswith(".gguf") else args.source
    stem = base.rsplit(".", 1)[0] if "." in os.path.basename(base) else base
    for dtype in args.types.split(","):
        dst = f"{stem}.{dtype}.gguf"
        if os.path.exists(dst) and not args.force:
            print(f"{dst} exists (--force to rewrite)")
            continue
        convert(args.source, dst + ".partial", dtype)
        os.replace(dst + ".partial", dst)
        print(f"wrote {dst} ({os.path.getsize(dst) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
