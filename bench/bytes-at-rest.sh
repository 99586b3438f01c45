#!/usr/bin/env bash
# Bytes at rest per delivered event, on SQLite and on PostgreSQL: installs Button,
# sends N events of the load generator's realistic mix end to end (the release service
# delivering to the fake Button), waits until every one is delivered and its entry
# written, stops the service, checkpoints / vacuums, and reports the bytes per event
# of each table and index (bench/bytes_at_rest.py): a table on stdout, JSON lines in
# bench/results/bytes-at-rest-<time>/results.jsonl.
#
#   bench/bytes-at-rest.sh               # N = 100,000 (a few minutes a store)
#   bench/bytes-at-rest.sh 20000         # another N
#   BYTES_QUICK=1 bench/bytes-at-rest.sh # N = 5,000
#
# BYTES_STORES="sqlite postgres" (the default), or either alone. BENCH_POSTGRES_URL: the
# PostgreSQL server (default postgres://postgres@127.0.0.1:5432/postgres); the database
# there is BYTES_DB (default bench_bytes_at_rest), made afresh. BYTES_KEEP=1 keeps the
# stores afterwards. BYTES_BIN_DIR: the binaries to measure (default target/release).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${BYTES_QUICK:-0}" = 1 ]; then n=${1:-5000}; else n=${1:-100000}; fi
stores=${BYTES_STORES:-sqlite postgres}
pg_server=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db_name=${BYTES_DB:-bench_bytes_at_rest}
[ "${BYTES_NO_BUILD:-0}" = 1 ] || cargo build --release --locked --workspace --quiet
bin=${BYTES_BIN_DIR:-target/release}
out=bench/results/bytes-at-rest-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
results=$out/results.jsonl
: > "$results"
base=${BENCH_PORT_BASE:-19080}
fake_port=$((base + 8)); svc_port=$((base + 9))
admin=bench-admin-token; ingest=bench-ingest-token; key=sk-bench-key
source bench/lib.sh
wait_http_seconds=60

for store in $stores; do
  dir=$out/$store
  mkdir -p "$dir"
  case $store in
    sqlite) url="sqlite://$PWD/$dir/data/button-delivery.db" ;;
    postgres)
      psql "$pg_server" -qAt -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" -c "CREATE DATABASE $db_name" >/dev/null
      url="${pg_server%/*}/$db_name" ;;
    *) echo "unknown store $store" >&2; exit 1 ;;
  esac
  echo "== $store: $n events end to end"
  "$bin/fake-button" --listen 127.0.0.1:$fake_port --api-key $key --record-arrivals 2>"$dir/fake.log" &
  fake_pid=$!; pids+=("$fake_pid")
  wait_http $fake_port "$dir/fake.log"
  env BUTTON_SERVER__LISTEN=127.0.0.1:$svc_port BUTTON_SERVER__DATA_DIR="$dir/data" \
      BUTTON_SERVER__ADMIN_RATE_LIMIT=0 \
      BUTTON_AUTH__ADMIN_TOKENS=$admin BUTTON_AUTH__INGEST_TOKENS=$ingest \
      BUTTON_DATABASE__URL="$url" \
      BUTTON_BUTTON__ORDERS_BASE_URL=http://127.0.0.1:$fake_port \
      BUTTON_BUTTON__ACTIVITY_URL_TEMPLATE="http://127.0.0.1:$fake_port/app/{application_id}/v1/app/activity" \
      "$bin/button-delivery" > "$dir/service.log" 2>&1 &
  svc_pid=$!; pids+=("$svc_pid")
  wait_http $svc_port "$dir/service.log"
  integration=$("$bin/loadgen" setup --url "http://127.0.0.1:$svc_port" --admin-token $admin --api-key $key --application-id app-bench1)
  "$bin/loadgen" run --url "http://127.0.0.1:$svc_port" --token $ingest --batch 100 --connections 8 --rate 0 \
    --duration 3600 --max-events "$n" --fake "http://127.0.0.1:$fake_port" --drain 600 \
    --label "bytes-$store" --out "$dir/loadgen.jsonl" | tail -n 3
  # Delivered at the fake Button is not yet recorded: wait for an empty queue.
  for _ in $(seq 1 600); do
    depth=$(curl -sf -H "Authorization: Bearer $admin" "http://127.0.0.1:$svc_port/v1/admin/integrations/$integration/stats" \
      | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["queue"]["depth"] + s["lane"]["in_flight"])')
    [ "$depth" = 0 ] && break
    sleep 0.5
  done
  curl -sf -H "Authorization: Bearer $admin" "http://127.0.0.1:$svc_port/v1/admin/integrations/$integration/stats" \
    | python3 -c 'import json,sys; s=json.load(sys.stdin); print("  outcomes:", {k: v for k, v in s["outcomes"].items() if v})'
  kill "$svc_pid"; wait "$svc_pid" 2>/dev/null || true
  kill "$fake_pid"; wait "$fake_pid" 2>/dev/null || true
  if [ "$store" = sqlite ]; then
    python3 bench/bytes_at_rest.py --sqlite "$dir/data/button-delivery.db" --events "$n" --label "$store" --out "$results"
  else
    python3 bench/bytes_at_rest.py --postgres "$url" --events "$n" --label "$store" --out "$results"
  fi
  if [ "${BYTES_KEEP:-0}" != 1 ]; then
    rm -rf "$dir/data"
    [ "$store" != postgres ] || psql "$pg_server" -qAt -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" >/dev/null
  fi
done
echo "results: $results"
