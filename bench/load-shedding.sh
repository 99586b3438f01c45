#!/usr/bin/env bash
# Load shedding: durable ingest (delivery paused) offered far more than it can commit
# (batches of 100 events on 1,024 connections: 102,400 events in flight), once with the
# commit queue bounded by database.max_queued_events (the default, 8192) and once with
# the bound out of reach. Prints loadgen's figures for each: events accepted per second,
# 503s, and the latency of the accepted requests. With the bound, a request waits for
# at most the bound's worth of commits and the rest are refused at once.
#
#   bench/load-shedding.sh [seconds]      # default 10 per run
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10}
[ -x target/release/loadgen ] || cargo build --release --locked --workspace --quiet
bin=target/release
port=${BENCH_SHED_PORT:-19190}; fake_port=$((port + 1))
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; exit 1; }

"$bin/fake-button" --listen 127.0.0.1:$fake_port --api-key sk-shed 2>/dev/null &
pids+=($!); wait_port $fake_port
for bound in 8192 100000000; do
  env BUTTON_SERVER__LISTEN=127.0.0.1:$port BUTTON_SERVER__DATA_DIR="$dir/$bound" \
      BUTTON_AUTH__ADMIN_TOKENS=shed-admin BUTTON_AUTH__INGEST_TOKENS=shed-ingest \
      BUTTON_BUTTON__ORDERS_BASE_URL=http://127.0.0.1:$fake_port \
      BUTTON_BUTTON__ACTIVITY_URL_TEMPLATE="http://127.0.0.1:$fake_port/app/{application_id}/v1/app/activity" \
      BUTTON_DATABASE__MAX_QUEUED_EVENTS=$bound BUTTON_LOG__LEVEL=error \
      "$bin/button-delivery" >/dev/null 2>&1 &
  svc=$!; pids+=($svc); wait_port $port
  id=$("$bin/loadgen" setup --url http://127.0.0.1:$port --admin-token shed-admin --api-key sk-shed --application-id app-shed)
  "$bin/loadgen" pause --url http://127.0.0.1:$port --admin-token shed-admin --id "$id"
  echo "== max_queued_events=$bound"
  "$bin/loadgen" run --label "shed-$bound" --url http://127.0.0.1:$port --token shed-ingest \
      --batch 100 --connections "${BENCH_SHED_CONNECTIONS:-1024}" --duration "$dur" --pid "$svc" 2>&1 | grep -v '^loadgen: 503' || true
  kill "$svc"; wait "$svc" 2>/dev/null || true
done
