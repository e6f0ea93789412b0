#!/usr/bin/env bash
# Real English text for KVLab (`text_file: debian:kjv`): extracts the King James Bible from Debian's
# bible-kjv-text (public domain; stored compressed, read with the bible-kjv program) into
# data/text/kjv.txt (gitignored) and checks its sha256. `debian:licenses` needs nothing: base-files
# ships /usr/share/common-licenses on every Debian system. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="data/text/kjv.txt"
SHA256="82fa5f3788c6a9a010fb128a0f0bf588984b5888a82058520620eded59b033ea"   # bible-kjv 4.38
if [ -f "$DEST" ] && [ "$(sha256sum "$DEST" | cut -d' ' -f1)" = "$SHA256" ]; then echo "text: $DEST (sha256 ok)"; exit 0; fi
if ! command -v bible >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing bible-kjv bible-kjv-text" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bible-kjv bible-kjv-text >/dev/null
fi
mkdir -p "$(dirname "$DEST")"
bible "Gen1:1-Rev22:21" > "$DEST.partial"
got=$(sha256sum "$DEST.partial" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
  echo "text: warning: $DEST has sha256 $got, not the $SHA256 of bible-kjv 4.38; results record the sha256 they used" >&2
fi
mv "$DEST.partial" "$DEST"
echo "text: $DEST"
