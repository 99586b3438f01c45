#!/usr/bin/env bash
# What a long retention prune costs ingest, on SQLite (or PostgreSQL): a 60 s flood (batches of 10 at
# 25,000 events/s, delivery to an instant fake Button) leaves about 1.5 million
# live-log entries, past the cap of 1,000,000 per integration; then 20 s each at 100,
# 300, 1,000 and 3,000 single events/s, end to end. A prune of about 500,000 entries
# runs during one of the steps (the pruner runs once a minute). Prints each step's
# ingest latency and delivery lag, the prunes the service logged (rows, took_ms), and
# every second of the steps with a request over 50 ms. The service's log (JSON),
# loadgen's output and the results are kept in bench/results/prune-stall-<time>/.
# About 6 minutes.
#
#   bench/prune-stall.sh            # the current build (target/release, built if needed)
#   PRUNE_STALL_BIN=DIR bench/prune-stall.sh   # the binaries in DIR (button-delivery,
#                                              # loadgen, fake-button)
#   PRUNE_STALL_STORE=postgres bench/prune-stall.sh   # on PostgreSQL: a fresh database
#       bench_prune_stall on BENCH_POSTGRES_URL's server (default
#       postgres://postgres@127.0.0.1:5432/postgres), with a cap of 300,000 entries
#       (PostgreSQL ingests less of the flood: it would not pass 1,000,000)
#   PRUNE_STALL_CAP=N       # the cap of entries per integration, on either store
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${PRUNE_STALL_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --workspace --quiet
  bin=target/release
fi
out=bench/results/prune-stall-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
base=${BENCH_PORT_BASE:-19180}
fake_port=$((base + 2)); svc_port=$((base + 3))
admin=bench-admin-token; ingest=bench-ingest-token; key=sk-bench-key
store=()
cap=${PRUNE_STALL_CAP:-}
case "${PRUNE_STALL_STORE:-sqlite}" in
  sqlite) ;;
  postgres)
    pg_server=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
    psql "$pg_server" -qAt -c "DROP DATABASE IF EXISTS bench_prune_stall WITH (FORCE)" \
        -c "CREATE DATABASE bench_prune_stall" >/dev/null
    store=(BUTTON_DATABASE__URL="${pg_server%/*}/bench_prune_stall")
    cap=${PRUNE_STALL_CAP:-300000} ;;
  *) echo "PRUNE_STALL_STORE is sqlite or postgres" >&2; exit 2 ;;
esac
[ -z "$cap" ] || store+=(BUTTON_LIVE_LOGS__MAX_ENTRIES_PER_INTEGRATION="$cap")
source bench/lib.sh

"$bin/fake-button" --listen 127.0.0.1:$fake_port --api-key $key --record-arrivals 2>"$out/fake.log" &
pids+=("$!")
wait_http $fake_port
env BUTTON_SERVER__LISTEN=127.0.0.1:$svc_port BUTTON_SERVER__DATA_DIR="$out/data" BUTTON_LOG__FORMAT=json "${store[@]}" \
    BUTTON_AUTH__ADMIN_TOKENS=$admin BUTTON_AUTH__INGEST_TOKENS=$ingest BUTTON_SERVER__ADMIN_RATE_LIMIT=0 \
    BUTTON_BUTTON__ORDERS_BASE_URL=http://127.0.0.1:$fake_port \
    BUTTON_BUTTON__ACTIVITY_URL_TEMPLATE="http://127.0.0.1:$fake_port/app/{application_id}/v1/app/activity" \
    "$bin/button-delivery" > "$out/service.log" 2>&1 &
svc_pid=$!; pids+=("$svc_pid")
wait_http $svc_port
"$bin/loadgen" setup --url "http://127.0.0.1:$svc_port" --admin-token $admin --api-key $key \
    --application-id app-bench1 > /dev/null
load() {
  "$bin/loadgen" run --out "$out/results.jsonl" --url "http://127.0.0.1:$svc_port" --token $ingest \
      --fake "http://127.0.0.1:$fake_port" --pid "$svc_pid" "$@" 2>> "$out/loadgen.log" ||
    { echo "loadgen failed; the end of $out/loadgen.log:" >&2; tail -n 5 "$out/loadgen.log" >&2; exit 1; }
}

echo "== the flood: 60 s, batches of 10 at 25,000 events/s"
load --label flood --batch 10 --rate 25000 --duration 60 --drain 90
for rate in 100 300 1000 3000; do
  echo "== $rate events/s for 20 s (from $(date -u +%H:%M:%S))"
  echo "$rate $(date -u +%H:%M:%S)" >> "$out/steps"
  load --label "step-$rate" --rate "$rate" --duration 20 --drain 30
done
kill "$svc_pid" 2>/dev/null || true
wait "$svc_pid" 2>/dev/null || true

python3 - "$out" <<'PY'
import collections, json, sys
out = sys.argv[1]
print(f"{'step':<10} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lag p99 ms':>11} {'lost':>6}")
for line in open(f"{out}/results.jsonl"):
    r = json.loads(line)
    lat, d = r["latency_ms"], r.get("delivery", {})
    print(f"{r['label']:<10} {r['events_per_s']:>9.0f} {lat['p50']:>8.2f} {lat['p99']:>8.2f} {lat['max']:>8.1f}"
          f" {d.get('lag_ms', {}).get('p99', 0):>11.1f} {d.get('lost', 0):>6}")
steps_from = open(f"{out}/steps").readline().split()[1]
slow = collections.defaultdict(list)
print("prunes:")
for line in open(f"{out}/service.log"):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    at = r.get("timestamp", "")[11:19]
    if "removed" in r:
        print(f"  ended {at}: {r['removed']} rows in {r.get('took_ms', '?')} ms")
    elif r.get("message") == "request finished" and at >= steps_from:
        slow[at].append(r.get("latency_ms", 0))
print("seconds of the steps with a request over 50 ms (requests, the slowest, how many over 50 ms):")
for at in sorted(slow):
    over = [v for v in slow[at] if v > 50]
    if over:
        print(f"  {at} {len(slow[at]):>5} {max(over):>8.1f} {len(over):>5}")
PY
echo "kept in $out"
