#!/usr/bin/env bash
# The test command: installs system libraries if missing, then runs the whole Swift test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build --build-tests
swift test --skip-build
