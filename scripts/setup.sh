#!/usr/bin/env bash
# Installs the system libraries KVLab links (OpenBLAS, HDF5, pkg-config) on Debian/Ubuntu.
# Idempotent: does nothing when they are present. Pass --plot to also install the Python
# plotting stack (h5py, matplotlib, pandas) from PyPI.
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
if [ "${1:-}" = "--plot" ]; then
  python3 -c "import h5py, matplotlib, pandas" 2>/dev/null || \
    python3 -m pip install -q -r "$(dirname "$0")/../experiments/requirements.txt"
fi
