#!/usr/bin/env bash
# A few seconds of every benchmark step, so the harness cannot rot (CI asserts no timings).
set -euo pipefail
BENCH_QUICK=1 exec "$(dirname "$0")/run.sh"
