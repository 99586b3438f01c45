#!/usr/bin/env bash
# The benchmark: one machine, one run, side by side.
#   1. the limit: a bare axum server answering 202, driven by the load generator, and
#      by the leanest client (`loadgen lean`) to show the load generator is not what
#      limits it; then its CPU per request at each rate of the cost curve (the floor);
#   2. durable ingest alone (delivery paused): single events at 16, 64, 256 and 1,024
#      connections, batches of 100;
#   3. end to end with an instant fake Button: 2,000 events/s for delivery lag and
#      ingest latency, then 10,000 events/s for 60 s; then the cost curve: service CPU
#      per event at 100, 300, 1,000 and 3,000 events/s;
#   4. end to end with a fake Button taking 100 ms per request: 5,000 events/s;
#   5. ingest again once the live-log store holds 1,000,000 entries;
#   6. the same on PostgreSQL (BENCH_POSTGRES_URL, a server on this machine by default;
#      each step gets a fresh database there): durable ingest at each connection count,
#      end to end at 2,000 events/s and 5,000 events/s for 60 s, the cost curve,
#      ingest with 1,000,000 entries stored;
#   7. end to end on PostgreSQL with two replicas sharing the load;
#   8. many integrations: 1, 100 and 1,000 installed, events spread over them (each
#      posted to one integration's own ingest path): end to end at 2,000 events/s,
#      then flat-out ingest with delivery running; on both stores.
# It rewrites the measured part of BENCHMARKS.md (between the bench markers) and draws
# its curves (bench/plots/*.svg).
#
#   bench/run.sh              # the full run (about 25 minutes on 2 cores)
#   BENCH_QUICK=1 bench/run.sh  # a few seconds per step, results only under bench/results (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=${BENCH_QUICK:-0}
if [ "$quick" = 1 ]; then
  dur=2; sustained=3; fill=2000; rate_hi=1000; rate_lo=200; rate_slow=500; rate_pg=500; drain=20
  cost_rates="100 300"; many="1 10 30"; conns="16 256"
else
  dur=${BENCH_DURATION:-20}; sustained=60; fill=1000000; rate_hi=10000; rate_lo=2000; rate_slow=5000; rate_pg=5000; drain=90
  cost_rates="100 300 1000 3000"; many="1 100 1000"; conns="16 64 256 1024"
fi
pg_server=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
command -v psql >/dev/null || { echo "psql is needed for the PostgreSQL steps" >&2; exit 1; }
psql "$pg_server" -qAtc 'SELECT 1' >/dev/null || { echo "PostgreSQL is not reachable at $pg_server" >&2; exit 1; }

cargo build --release --locked --workspace --quiet
bin=target/release
out=bench/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
results=$out/results.jsonl
: > "$results"
base=${BENCH_PORT_BASE:-19080}
bare_port=$((base + 1)); fake_port=$((base + 2)); svc_port=$((base + 3)); svc2_port=$((base + 4))
admin=bench-admin-token; ingest=bench-ingest-token; key=sk-bench-key
source bench/lib.sh

# Starts the service on a fresh data directory, listening on $svc_port, and installs
# Button on it ($integration); extra BUTTON_* settings as arguments.
start_service() {
  start_replica "$@"
  integration=$("$bin/loadgen" setup --url "http://127.0.0.1:$svc_port" --admin-token $admin --api-key $key --application-id app-bench1)
}

# Starts one more service process (a replica: no install), listening on $svc_port.
start_replica() {
  local name=$1; shift
  local dir=$out/$name
  mkdir -p "$dir"
  env BUTTON_SERVER__LISTEN=127.0.0.1:$svc_port BUTTON_SERVER__DATA_DIR="$dir/data" \
      BUTTON_AUTH__ADMIN_TOKENS=$admin BUTTON_AUTH__INGEST_TOKENS=$ingest BUTTON_SERVER__ADMIN_RATE_LIMIT=0 \
      BUTTON_BUTTON__ORDERS_BASE_URL=http://127.0.0.1:$fake_port \
      BUTTON_BUTTON__ACTIVITY_URL_TEMPLATE="http://127.0.0.1:$fake_port/app/{application_id}/v1/app/activity" \
      "$@" "$bin/button-delivery" > "$dir/service.log" 2>&1 &
  svc_pid=$!; pids+=("$svc_pid")
  wait_http "$svc_port" "$dir/service.log"
}

# Stops the service named $1 (process $2, by default the last started).
stop_service() {
  local pid=${2:-$svc_pid}
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ "${BENCH_KEEP_LOGS:-0}" = 1 ] || rm -f "$out/$1/service.log"
}

# A fresh database on the PostgreSQL server, by name; prints its URL.
fresh_database() {
  local name="bench_$1"
  psql "$pg_server" -qAt -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
  echo "${pg_server%/*}/$name"
}
# Replicas share the encryption key (and the tokens, given above).
encryption_key=$(head -c 32 /dev/urandom | base64)

start_fake() {
  "$bin/fake-button" --listen 127.0.0.1:$fake_port --api-key $key --record-arrivals "$@" 2>"$out/fake.log" &
  fake_pid=$!; pids+=("$fake_pid")
  wait_http $fake_port "$out/fake.log"
}

stop_fake() { kill "$fake_pid" 2>/dev/null || true; wait "$fake_pid" 2>/dev/null || true; }

load() { "$bin/loadgen" run --out "$results" "$@"; }

echo "== 1. the limit: bare axum, and the load generator against the leanest client"
"$bin/bare" --listen 127.0.0.1:$bare_port 2>/dev/null &
bare_pid=$!; pids+=("$bare_pid")
wait_http $bare_port
"$bin/loadgen" lean --out "$results" --label bare-lean --url http://127.0.0.1:$bare_port --token x --duration $dur --pid $bare_pid
load --label bare-single --url http://127.0.0.1:$bare_port --token x --duration $dur --pid $bare_pid
load --label bare-batch --url http://127.0.0.1:$bare_port --token x --batch 100 --connections 16 --duration $dur --pid $bare_pid
# What one HTTP request costs this host at each rate of the cost curve, with nothing
# done for it: the floor under the service's CPU per event.
for r in $cost_rates; do
  load --label "bare-cost-$r" --url http://127.0.0.1:$bare_port --token x --rate "$r" --duration $dur --pid $bare_pid
done
kill $bare_pid; wait $bare_pid 2>/dev/null || true
# The sustained end-to-end rates are the targets' shares of this limit: 0.15 of it on
# SQLite, 0.08 on PostgreSQL (issue 13), so that the run says whether they hold.
limit=$(python3 -c '
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(int(max(r["requests_per_s"] for r in runs if r["label"] in ("bare-lean", "bare-single"))))' "$results")
if [ "$quick" != 1 ]; then
  rate_hi=$(( (limit * 15 + 99) / 100 )); rate_pg=$(( (limit * 8 + 99) / 100 ))
fi
echo "the limit: $limit requests/s; sustained runs at $rate_hi (SQLite) and $rate_pg (PostgreSQL) events/s"

# Durable ingest of single events at each connection count (delivery paused);
# `$1` prefixes the labels.
ingest_by_connections() {
  for c in $conns; do
    load --label "$1ingest-c$c" --url http://127.0.0.1:$svc_port --token $ingest --connections "$c" --duration $dur --pid "$svc_pid"
  done
}

# End to end, single events at each rate of the cost curve; `$1` prefixes the labels.
cost_curve() {
  for r in $cost_rates; do
    load --label "$1cost-$r" --url http://127.0.0.1:$svc_port --token $ingest --rate "$r" \
         --duration $dur --fake http://127.0.0.1:$fake_port --drain $drain --pid "$svc_pid"
  done
}

# The service's CPU while nothing happens, over $dur seconds, as a result line `$1`.
idle_cost() {
  local ticks=$(getconf CLK_TCK) c0 c1
  sleep 1
  c0=$(awk '{print $14 + $15}' "/proc/$svc_pid/stat")
  sleep "$dur"
  c1=$(awk '{print $14 + $15}' "/proc/$svc_pid/stat")
  echo "{\"label\":\"$1\",\"duration_s\":$dur,\"service\":{\"cpu_s_total\":$(awk -v a="$c0" -v b="$c1" -v t="$ticks" 'BEGIN {print (b - a) / t}'),\"cpu_cores_during_load\":$(awk -v a="$c0" -v b="$c1" -v t="$ticks" -v d="$dur" 'BEGIN {print (b - a) / t / d}')}}" >> "$results"
}

# $2 integrations installed on a fresh service (BUTTON_* settings after), events spread
# over them: end to end at the steady rate, then flat out with delivery running.
many_integrations() {
  local prefix=$1 n=$2; shift 2
  start_fake
  start_replica "${prefix}many-$n" "$@"
  "$bin/loadgen" setup --url "http://127.0.0.1:$svc_port" --admin-token $admin --api-key $key \
      --application-id app-bench1 --count "$n" > "$out/${prefix}ids-$n"
  idle_cost "${prefix}int$n-idle"
  load --label "${prefix}int$n-e2e" --url http://127.0.0.1:$svc_port --token $ingest --rate $rate_lo \
       --duration $dur --spread "$out/${prefix}ids-$n" --fake http://127.0.0.1:$fake_port --drain $drain --pid "$svc_pid"
  load --label "${prefix}int$n-ingest" --url http://127.0.0.1:$svc_port --token $ingest \
       --duration $dur --spread "$out/${prefix}ids-$n" --pid "$svc_pid"
  stop_service "${prefix}many-$n"
  stop_fake
}

echo "== 2. durable ingest alone (delivery paused)"
start_fake
start_service ingest
"$bin/loadgen" pause --url http://127.0.0.1:$svc_port --admin-token $admin --id "$integration"
ingest_by_connections ""
load --label ingest-batch --url http://127.0.0.1:$svc_port --token $ingest --batch 100 --connections 16 --duration $dur --pid "$svc_pid"

echo "== 5. the same ingest with $fill live-log entries stored"
load --label fill --url http://127.0.0.1:$svc_port --token $ingest --batch 500 --connections 4 --mix filtered \
     --duration 600 --max-events $fill --pid "$svc_pid"
load --label ingest-c256-full --url http://127.0.0.1:$svc_port --token $ingest --connections 256 --duration $dur --pid "$svc_pid"
load --label ingest-batch-full --url http://127.0.0.1:$svc_port --token $ingest --batch 100 --connections 16 --duration $dur --pid "$svc_pid"
stop_service ingest
stop_fake

echo "== 3. end to end, instant Button"
start_fake
start_service e2e-instant
# Steady 2,000 events/s first (lag and ingest latency in normal operation), then
# the 60-second flood.
load --label e2e-instant-2k --url http://127.0.0.1:$svc_port --token $ingest --rate $rate_lo \
     --duration $dur --fake http://127.0.0.1:$fake_port --drain $drain --pid "$svc_pid"
load --label e2e-instant-sustained --url http://127.0.0.1:$svc_port --token $ingest --batch 10 --rate $rate_hi \
     --duration $sustained --fake http://127.0.0.1:$fake_port --drain $drain --pid "$svc_pid"
cost_curve ""
stop_service e2e-instant
stop_fake

echo "== 4. end to end, Button taking 100 ms"
start_fake --latency-ms 100
start_service e2e-100ms BUTTON_DELIVERY__LANE_CONCURRENCY=640
load --label e2e-100ms --url http://127.0.0.1:$svc_port --token $ingest --batch 10 --rate $rate_slow \
     --duration $dur --fake http://127.0.0.1:$fake_port --drain $drain --pid "$svc_pid"
peak=$("$bin/loadgen" stats --url http://127.0.0.1:$fake_port)
echo "{\"label\":\"fake-100ms\",\"fake\":$peak}" >> "$results"
stop_service e2e-100ms
stop_fake

echo "== 6. PostgreSQL, one replica"
start_fake
start_service pg-ingest BUTTON_DATABASE__URL="$(fresh_database ingest)"
"$bin/loadgen" pause --url http://127.0.0.1:$svc_port --admin-token $admin --id "$integration"
ingest_by_connections pg-
load --label pg-ingest-batch --url http://127.0.0.1:$svc_port --token $ingest --batch 100 --connections 16 --duration $dur --pid "$svc_pid"
load --label pg-fill --url http://127.0.0.1:$svc_port --token $ingest --batch 500 --connections 4 --mix filtered \
     --duration 900 --max-events $fill --pid "$svc_pid"
load --label pg-ingest-c256-full --url http://127.0.0.1:$svc_port --token $ingest --connections 256 --duration $dur --pid "$svc_pid"
load --label pg-ingest-batch-full --url http://127.0.0.1:$svc_port --token $ingest --batch 100 --connections 16 --duration $dur --pid "$svc_pid"
stop_service pg-ingest
stop_fake
start_fake
start_service pg-e2e BUTTON_DATABASE__URL="$(fresh_database e2e)"
load --label pg-e2e-2k --url http://127.0.0.1:$svc_port --token $ingest --rate $rate_lo \
     --duration $dur --fake http://127.0.0.1:$fake_port --drain $drain --pid "$svc_pid"
load --label pg-e2e-sustained --url http://127.0.0.1:$svc_port --token $ingest --batch 10 --rate $rate_pg \
     --duration $sustained --fake http://127.0.0.1:$fake_port --drain $drain --pid "$svc_pid"
cost_curve pg-
stop_service pg-e2e
stop_fake

echo "== 7. PostgreSQL, two replicas"
start_fake
database=$(fresh_database replicas)
start_service pg2-a BUTTON_DATABASE__URL="$database" BUTTON_AUTH__ENCRYPTION_KEY="$encryption_key"
pid_a=$svc_pid; port_a=$svc_port
svc_port=$svc2_port
start_replica pg2-b BUTTON_DATABASE__URL="$database" BUTTON_AUTH__ENCRYPTION_KEY="$encryption_key"
pid_b=$svc_pid; port_b=$svc_port
both=http://127.0.0.1:$port_a,http://127.0.0.1:$port_b
load --label pg2-e2e-2k --url "$both" --token $ingest --rate $rate_lo \
     --duration $dur --fake http://127.0.0.1:$fake_port --drain $drain --pid "$pid_a,$pid_b"
load --label pg2-e2e-sustained --url "$both" --token $ingest --batch 10 --rate $rate_pg \
     --duration $sustained --fake http://127.0.0.1:$fake_port --drain $drain --pid "$pid_a,$pid_b"
stop_service pg2-a "$pid_a"
stop_service pg2-b "$pid_b"
svc_port=$port_a
stop_fake

echo "== 8. many integrations"
for n in $many; do many_integrations "" "$n"; done
for n in $many; do many_integrations pg- "$n" BUTTON_DATABASE__URL="$(fresh_database many$n)"; done

{
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- machine: $(uname -srm); $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')); $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) memory"
  echo "- disk of the data directory: $(df -h "$out" | awk 'NR==2 {print $1 " (" $2 ")"}')"
  echo "- rustc: $(rustc --version)"
  echo "- durability: database.synchronous = full (every commit synced before 202)"
  echo "- PostgreSQL: $(psql "$pg_server" -qAtc 'SHOW server_version') on the same machine; fsync $(psql "$pg_server" -qAtc 'SHOW fsync'), synchronous_commit $(psql "$pg_server" -qAtc 'SHOW synchronous_commit') (every commit flushed before 202), shared_buffers $(psql "$pg_server" -qAtc 'SHOW shared_buffers'), ssl $(psql "$pg_server" -qAtc 'SHOW ssl') (the service's default sslmode=prefer: TLS when offered)"
} > "$out/machine.md"

if [ "$quick" = 1 ]; then
  "$bin/loadgen" report --results "$results" --machine "$out/machine.md" --into "$out/BENCHMARKS.md" --quick
  echo "smoke run: results in $out"
else
  "$bin/loadgen" report --results "$results" --machine "$out/machine.md" --into BENCHMARKS.md
  cp "$results" "$out/" 2>/dev/null || true
  echo "BENCHMARKS.md updated; raw results in $results"
fi
