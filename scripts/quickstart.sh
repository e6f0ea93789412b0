#!/usr/bin/env bash
# The quickstart: installs what is missing, builds KVLab (release), runs the quickstart sweep on
# the model the project ships (models/kvlab-retrieval), prints the summary and draws the plots.
# Rerunning resumes: finished runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --plot
swift build -c release --product kvlab
.build/release/kvlab run experiments/quickstart.yaml "$@"
python3 experiments/plot.py results/out/quickstart.h5 --out results/out/quickstart-plots
echo "plots: results/out/quickstart-plots/"
