#!/usr/bin/env bash
# The console's browser tests: headless Chromium (Debian's) driven by playwright-core
# against the real binaries, which must be built already (cargo build --workspace
# --locked --bins). Installs Chromium if missing and the pinned playwright-core
# (npm ci), then runs the tests. Screenshots of each page go to
# target/console-screenshots (or $CONSOLE_SCREENSHOTS).
#
#   tests/console/run.sh [BINARY]   (default: $BUTTON_BIN or target/debug/button-delivery;
#                                    fake-button beside it, or $FAKE_BUTTON_BIN)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [ -n "${1:-}" ]; then
  BUTTON_BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
  export BUTTON_BIN
fi
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "console tests: installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq chromium >/dev/null; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq chromium >/dev/null
  fi
fi

cd "$here"
npm ci --silent --no-audit --no-fund
cd "$repo"
exec node --test --test-concurrency=1 tests/console/console.test.mjs
