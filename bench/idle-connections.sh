#!/usr/bin/env bash
# Idle connections (the slowloris pattern) against the release binary: 20,000
# connections that send the start of a request head and nothing more. Passes if the
# service's RSS stays under 150 MB, comes back down after they close, and real
# requests keep being served meanwhile (bench/idle_connections.py prints the figures).
#
#   bench/idle-connections.sh [connections]     # default 20000; CI runs it as is
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-20000}
bin=${BUTTON_BIN:-target/release/button-delivery}
[ -x "$bin" ] || cargo build --release --locked --quiet --bin button-delivery
port=${BENCH_IDLE_PORT:-19180}
dir=$(mktemp -d)
log=$dir/service.log
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

BUTTON_SERVER__LISTEN=127.0.0.1:$port BUTTON_SERVER__DATA_DIR="$dir/data" \
  BUTTON_LOG__LEVEL=warn "$bin" >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done
python3 bench/idle_connections.py --addr "127.0.0.1:$port" --pid "$pid" --connections "$connections" "${@:2}"
