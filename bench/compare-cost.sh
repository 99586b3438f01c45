#!/usr/bin/env bash
# A/B of what the work costs: two builds of the service measured alternately (old then
# new in odd rounds, new then old in even ones), each step on a fresh service with a
# fresh data directory and a fresh fake Button:
#   idle-100    100 integrations installed, nothing sent: service CPU over 10 s;
#   cost-100    end to end, 100 single events/s for BENCH_DURATION s: CPU per event;
#   cost-1000   the same at 1,000 events/s;
#   intN-e2e    N integrations, 2,000 events/s spread over them: CPU per event, lag;
#   intN-ingest the same N, flat-out ingest with delivery running: events/s, peak RSS;
#   durable-64  one integration, delivery paused: single events over 64 connections
#               for BENCH_DURATION s: requests/s, p99;
#   durable-batch  the same, batches of 100 over 16 connections: events/s, p99.
# N is 100, or each of COMPARE_INTEGRATIONS (e.g. "100 1000").
# Prints one line per step and build with the medians over the rounds, and writes the
# raw results to bench/results/compare-cost-<UTC>/results.jsonl.
#
#   bench/compare-cost.sh OLD_BIN_DIR NEW_BIN_DIR [ROUNDS]   # ROUNDS defaults to 3
#
# On PostgreSQL instead of the embedded store: COMPARE_POSTGRES_URL=postgres://.../postgres
# (each service then gets a fresh database on that server). The end-to-end steps then
# also count the CPU of the server's processes on this machine (`postgres`) during
# the step: the service's CPU per event, and the two together.
#
# The tools (loadgen, fake-button) come from target/release for both sides.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OLD_BIN_DIR NEW_BIN_DIR [ROUNDS]" >&2; exit 2; }
old=$(cd "$1" && pwd); new=$(cd "$2" && pwd); rounds=${3:-3}
cd "$(dirname "$0")/.."
tools=target/release
dur=${BENCH_DURATION:-15}
out=bench/results/compare-cost-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"; results=$out/results.jsonl; : > "$results"
base=${BENCH_PORT_BASE:-19280}; fake_port=$((base + 2)); svc_port=$((base + 3))
svc_pid=; fake_pid=
cleanup() { kill $svc_pid $fake_pid 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
pg_server=${COMPARE_POSTGRES_URL:-}
many=${COMPARE_INTEGRATIONS:-100}
store=()

wait_http() {
  for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "nothing listens on port $1" >&2; exit 1
}

start() {
  local bin=$1 name=$2
  rm -rf "${out:?}/$name"; mkdir -p "$out/$name"
  if [ -n "$pg_server" ]; then
    local db=compare_${name//-/_}
    psql "$pg_server" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
    store=(BUTTON_DATABASE__URL="${pg_server%/*}/$db")
  fi
  "$tools/fake-button" --listen 127.0.0.1:$fake_port --api-key sk-bench-key --record-arrivals 2>/dev/null &
  fake_pid=$!; wait_http $fake_port
  env BUTTON_SERVER__LISTEN=127.0.0.1:$svc_port BUTTON_SERVER__DATA_DIR="$out/$name/data" \
      BUTTON_AUTH__ADMIN_TOKENS=adm BUTTON_AUTH__INGEST_TOKENS=ing BUTTON_SERVER__ADMIN_RATE_LIMIT=0 \
      BUTTON_BUTTON__ORDERS_BASE_URL=http://127.0.0.1:$fake_port \
      BUTTON_BUTTON__ACTIVITY_URL_TEMPLATE="http://127.0.0.1:$fake_port/app/{application_id}/v1/app/activity" \
      "${store[@]}" "$bin/button-delivery" > /dev/null 2>&1 &
  svc_pid=$!; wait_http $svc_port
}
stop() { kill $svc_pid $fake_pid; wait $svc_pid $fake_pid 2>/dev/null || true; svc_pid=; fake_pid=; }

# CPU seconds (clock ticks) of this machine's PostgreSQL processes so far: 0 without it.
db_ticks() {
  [ -n "$pg_server" ] || { echo 0; return; }
  awk '$2 == "(postgres)" {s += $14 + $15} END {print s + 0}' /proc/[0-9]*/stat 2>/dev/null || true
}

# loadgen run LABEL ARGS...: one step, with the database server's CPU during it
# written beside (to $out/$side.db, as "label seconds").
step() {
  local label=$1; shift
  local t0 t1; t0=$(db_ticks)
  "$tools/loadgen" run --out "$out/$side.jsonl" --url http://127.0.0.1:$svc_port --token ing --pid $svc_pid \
    --label "$label" "$@" 2>/dev/null
  t1=$(db_ticks)
  echo "$label $(awk -v a="$t0" -v b="$t1" -v t="$(getconf CLK_TCK)" 'BEGIN {print (b - a) / t}')" >> "$out/$side.db"
}

setup() { "$tools/loadgen" setup --url http://127.0.0.1:$svc_port --admin-token adm --api-key sk-bench-key --count "$1" > "$out/ids"; }

run_side() {
  side=$1; local bin=$2
  start "$bin" "$side-idle"; setup 100; sleep 1
  local c0 c1; c0=$(awk '{print $14 + $15}' /proc/$svc_pid/stat); sleep 10; c1=$(awk '{print $14 + $15}' /proc/$svc_pid/stat)
  echo "{\"label\":\"idle-100\",\"side\":\"$side\",\"cores\":$(awk -v a="$c0" -v b="$c1" -v t="$(getconf CLK_TCK)" 'BEGIN {print (b - a) / t / 10}')}" >> "$results"
  stop
  for rate in 100 1000; do
    start "$bin" "$side-cost-$rate"; setup 1
    step "cost-$rate" --rate $rate --duration "$dur" --fake http://127.0.0.1:$fake_port --drain 30
    stop
  done
  for n in $many; do
    start "$bin" "$side-int$n"; setup "$n"
    step "int$n-e2e" --rate 2000 --duration "$dur" --spread "$out/ids" --fake http://127.0.0.1:$fake_port --drain 30
    step "int$n-ingest" --duration "$dur" --spread "$out/ids"
    stop
  done
  start "$bin" "$side-durable"; setup 1
  "$tools/loadgen" pause --url http://127.0.0.1:$svc_port --admin-token adm --id "$(cat "$out/ids")" > /dev/null
  step durable-64 --connections 64 --duration "$dur"
  step durable-batch --batch 100 --connections 16 --duration "$dur"
  stop
  python3 -c '
import json, sys
side = sys.argv[2]
db = dict(l.split() for l in open(sys.argv[3]))
for l in open(sys.argv[1]):
    r = json.loads(l); r["side"] = side; r["db_cpu_s"] = float(db[r["label"]]); print(json.dumps(r))' \
    "$out/$side.jsonl" "$side" "$out/$side.db" >> "$results"
  rm -f "$out/$side.jsonl" "$out/$side.db"
}

for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then run_side old "$old"; run_side new "$new"; else run_side new "$new"; run_side old "$old"; fi
  echo "round $round done"
done

python3 - "$results" $many <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def fig(r):
    if r["label"] == "idle-100":
        return r["cores"], "cores idle"
    if r["label"].endswith("-ingest") or r["label"].startswith("durable-"):
        return r["events_per_s"], "events/s ingested"
    return 1000 * r["service"]["cpu_s_total"] / max(r["events_accepted"], 1), "ms CPU/event"
print("| step | old | new | new/old |\n|---|---:|---:|---:|")
labels = ["idle-100", "cost-100", "cost-1000"]
for n in sys.argv[2:]:
    labels += [f"int{n}-e2e", f"int{n}-ingest"]
labels += ["durable-64", "durable-batch"]
for label in labels:
    med = {}
    for side in ["old", "new"]:
        vals = [fig(r)[0] for r in rows if r["label"] == label and r["side"] == side]
        med[side] = statistics.median(vals) if vals else float("nan")
    unit = fig(next(r for r in rows if r["label"] == label))[1]
    def med_of(side, key):
        vals = [key(r) for r in rows if r["label"] == label and r["side"] == side]
        return statistics.median(vals) if vals else 0
    extra = ""
    if label.endswith("-e2e") or label.startswith("cost-"):
        lag = {s: med_of(s, lambda r: r["delivery"]["lag_ms"]["p99"]) for s in ["old", "new"]}
        got = {s: med_of(s, lambda r: r["delivery"]["delivered_per_s"]) for s in ["old", "new"]}
        p99 = {s: med_of(s, lambda r: r["latency_ms"]["p99"]) for s in ["old", "new"]}
        extra = (f" (lag p99 {lag['old']:.1f} / {lag['new']:.1f} ms; ingest p99 {p99['old']:.1f} / {p99['new']:.1f} ms;"
                 f" delivered {got['old']:.0f} / {got['new']:.0f} per s)")
    elif label.endswith("-ingest") or label.startswith("durable-"):
        rss = {s: med_of(s, lambda r: r["service"]["peak_rss_mb"]) for s in ["old", "new"]}
        p99 = {s: med_of(s, lambda r: r["latency_ms"]["p99"]) for s in ["old", "new"]}
        extra = (f" (ingest p99 {p99['old']:.1f} / {p99['new']:.1f} ms;"
                 f" peak RSS {rss['old']:.0f} / {rss['new']:.0f} MB)")
    ratio = med["new"] / med["old"] if med["old"] else float("nan")
    print(f"| {label}: {unit}{extra} | {med['old']:.3f} | {med['new']:.3f} | {ratio:.2f} |")
    if (label.endswith("-e2e") or label.startswith("cost-")) and any(r.get("db_cpu_s") for r in rows):
        both = {s: med_of(s, lambda r: 1000 * (r["service"]["cpu_s_total"] + r["db_cpu_s"]) / max(r["events_accepted"], 1))
                for s in ["old", "new"]}
        ratio = both["new"] / both["old"] if both["old"] else float("nan")
        print(f"| {label}: ms CPU/event, service and PostgreSQL | {both['old']:.3f} | {both['new']:.3f} | {ratio:.2f} |")
EOF
