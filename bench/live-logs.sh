#!/usr/bin/env bash
# Live Logs lookups with a big store: every filter and page of
# GET /v1/admin/integrations/{id}/logs, over HTTP against the release binary, on SQLite
# and on PostgreSQL. Each store is filled FAST by direct SQL (bench/live_logs.py: N
# entries spread over 4 integrations, one delivery each; the last integration has only
# `filtered` entries), then the service is started on it and each case is asked many
# times (p50/p99/max per case: a table on stdout, JSON lines in
# bench/results/live-logs-<time>/results.jsonl).
#
#   bench/live-logs.sh                 # N = 10,000,000 (about 15 minutes a store to fill on 2 cores)
#   bench/live-logs.sh 1000000         # another N
#   LIVE_LOGS_QUICK=1 bench/live-logs.sh   # N = 20,000, 20 requests a case (CI)
#
# LIVE_LOGS_BEFORE=DIR: DIR holds an older build's binaries (button-delivery). The store
#   is made and filled with that version's schema and measured with it ("before"), then
#   the current build (target/release) starts on the same store, applies its
#   migrations (their time is printed) and is measured again ("after").
#   LIVE_LOGS_AFTER=DIR: the current build's binaries, if not target/release.
# LIVE_LOGS_STORES="sqlite postgres" (the default), or either alone.
# LIVE_LOGS_REQUESTS: requests per case (default 300; quick: 20).
# BENCH_POSTGRES_URL: the PostgreSQL server (default postgres://postgres@127.0.0.1:5432/postgres);
#   the benchmark's database there is LIVE_LOGS_DB (default bench_live_logs), made afresh.
# LIVE_LOGS_KEEP=1 keeps the stores (data directory, database) afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=${LIVE_LOGS_QUICK:-0}
if [ "$quick" = 1 ]; then
  n=${1:-20000}; requests=${LIVE_LOGS_REQUESTS:-20}
else
  n=${1:-10000000}; requests=${LIVE_LOGS_REQUESTS:-300}
fi
stores=${LIVE_LOGS_STORES:-sqlite postgres}
pg_server=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db_name=${LIVE_LOGS_DB:-bench_live_logs}
before=${LIVE_LOGS_BEFORE:-}
integrations_count=4

if [ "${LIVE_LOGS_NO_BUILD:-0}" != 1 ]; then
  cargo build --release --locked --bin button-delivery --quiet
fi
after_bin=${LIVE_LOGS_AFTER:-target/release}/button-delivery
first_bin=${before:+$before/button-delivery}
first_bin=${first_bin:-$after_bin}
out=bench/results/live-logs-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
results=$out/results.jsonl
: > "$results"
port=${BENCH_PORT_BASE:-19080}; port=$((port + 7))
admin=bench-admin-token; ingest=bench-ingest-token
svc_pid=
cleanup() { [ -z "$svc_pid" ] || kill "$svc_pid" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_http() {
  # Migrations of a big store run before the service listens: wait for them.
  for _ in $(seq 1 36000); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$svc_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "the service did not start; the end of $1:" >&2
  tail -n 20 "$1" >&2
  exit 1
}

# start BINARY STORE_URL DIR: the service on the store, nothing pruned (the rows are
# older than the default retention), no admin rate limit (the measurement is admin calls).
start() {
  local started=$SECONDS
  env BUTTON_SERVER__LISTEN=127.0.0.1:$port BUTTON_SERVER__DATA_DIR="$3/data" \
      BUTTON_SERVER__ADMIN_RATE_LIMIT=0 \
      BUTTON_AUTH__ADMIN_TOKENS=$admin BUTTON_AUTH__INGEST_TOKENS=$ingest \
      BUTTON_DATABASE__URL="$2" \
      BUTTON_LIVE_LOGS__MAX_AGE=36500days BUTTON_LIVE_LOGS__DEAD_LETTER_MAX_AGE=36500days \
      BUTTON_LIVE_LOGS__MAX_ENTRIES_PER_INTEGRATION=1000000000 \
      BUTTON_BUTTON__ORDERS_BASE_URL=http://127.0.0.1:9 \
      BUTTON_BUTTON__ACTIVITY_URL_TEMPLATE="http://127.0.0.1:9/app/{application_id}/v1/app/activity" \
      "$1" >> "$3/service.log" 2>&1 &
  svc_pid=$!
  wait_http "$3/service.log"
  echo "  $1 up in $((SECONDS - started)) s (migrations included)"
}

stop() { kill "$svc_pid" 2>/dev/null || true; wait "$svc_pid" 2>/dev/null || true; svc_pid=; }

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
  echo "== $store: $n entries"
  start "$first_bin" "$url" "$dir"
  ids=$(python3 bench/live_logs.py install --url "http://127.0.0.1:$port" --token $admin --count $integrations_count | paste -sd,)
  stop
  fill_started=$SECONDS
  if [ "$store" = sqlite ]; then
    python3 bench/live_logs.py fill --sqlite "$dir/data/button-delivery.db" --entries "$n" --integrations "$ids"
  else
    python3 bench/live_logs.py fill --postgres "$url" --entries "$n" --integrations "$ids"
  fi
  echo "  filled in $((SECONDS - fill_started)) s"
  label=$store
  [ -z "$before" ] || label=$store-before
  start "$first_bin" "$url" "$dir"
  python3 bench/live_logs.py measure --url "http://127.0.0.1:$port" --token $admin --integrations "$ids" \
    --entries "$n" --requests "$requests" --label "$label" --out "$results"
  stop
  if [ -n "$before" ]; then
    start "$after_bin" "$url" "$dir"
    python3 bench/live_logs.py measure --url "http://127.0.0.1:$port" --token $admin --integrations "$ids" \
      --entries "$n" --requests "$requests" --label "$store-after" --out "$results"
    stop
  fi
  if [ "$store" = sqlite ]; then
    du -sh "$dir/data" | sed 's/^/  store size: /'
  else
    psql "$url" -qAtc "SELECT '  store size: ' || pg_size_pretty(pg_database_size(current_database()))"
  fi
  if [ "${LIVE_LOGS_KEEP:-0}" != 1 ]; then
    rm -rf "$dir/data"
    [ "$store" != postgres ] || psql "$pg_server" -qAt -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" >/dev/null
  fi
done
echo "results: $results"
