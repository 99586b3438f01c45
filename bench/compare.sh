#!/usr/bin/env bash
# A/B benchmark: two builds of the service measured alternately in one session, to
# show that a change does not slow anything down (or by how much it speeds it up).
#
# Each round measures both builds, old then new in odd rounds and new then old in even
# ones (so a drift of the host over the session weighs on both alike), with the steps
# of bench/run.sh that exercise the service, each on a fresh service process with a
# fresh data directory and a fresh fake Button:
#   2. durable ingest alone (delivery paused): single events over 256 connections for
#      BENCH_DURATION s, then batches of 100 over 16 connections;
#   3. end to end with an instant fake Button: 2,000 events/s single for
#      BENCH_DURATION s, then 10,000 events/s in batches of 10 for BENCH_SUSTAINED s,
#      each waiting up to BENCH_DRAIN s for every event to arrive.
# Only button-delivery differs between the two sides: loadgen and fake-button come
# from one directory for both. At the end it prints a Markdown table (also written to
# compare.md beside the raw results.jsonl): for every step each round's figure of
# each side, the median of each side and the ratio new/old of the medians.
#
#   bench/compare.sh OLD_BIN_DIR NEW_BIN_DIR [ROUNDS]    # ROUNDS defaults to 3
#
# OLD_BIN_DIR and NEW_BIN_DIR each hold a `button-delivery` binary. Settings (env):
#   BENCH_TOOLS_DIR    loadgen and fake-button (default target/release; build them
#                      first with `cargo build --release --workspace`)
#   BENCH_DURATION     seconds of each ingest step and of the 2,000/s step (default 20)
#   BENCH_SUSTAINED    seconds of the 10,000/s step (default 60)
#   BENCH_DRAIN        seconds each end-to-end step waits for deliveries (default 90)
#   BENCH_PORT_BASE    ports: fake Button at base+2, the service at base+3 (default 19080)
#   BENCH_RESULTS_DIR  where compare-<UTC timestamp>/ goes (default bench/results)
#   BENCH_KEEP_LOGS=1  keep each service's log; BENCH_KEEP_DATA=1 keep its data directory
# With the defaults a round takes about 5 minutes while delivery keeps up with the load,
# up to about 15 when it falls behind and the drains run their full time.
#
# The host must be otherwise idle: load generator, fake Button and service share its
# cores, and anything else running moves the figures by more than most changes do.
# Quick functional check (figures meaningless):
#   BENCH_DURATION=2 BENCH_SUSTAINED=3 BENCH_DRAIN=20 bench/compare.sh A B 1
set -euo pipefail

usage() {
  echo "usage: $0 OLD_BIN_DIR NEW_BIN_DIR [ROUNDS]   (see the header of this script)" >&2
  exit 2
}
[ $# -ge 2 ] && [ $# -le 3 ] || usage
rounds=${3:-3}
case $rounds in '' | *[!0-9]*) echo "ROUNDS must be a positive integer" >&2; usage ;; esac
rounds=$((10#$rounds))
[ "$rounds" -ge 1 ] || { echo "ROUNDS must be a positive integer" >&2; usage; }

# Directories given relative to the caller's directory are resolved before moving to
# the repository root (BENCH_TOOLS_DIR's default is relative to the root, like run.sh).
absdir() { (cd "$1" 2>/dev/null && pwd) || { echo "no directory $1" >&2; exit 2; }; }
old_bin=$(absdir "$1")
new_bin=$(absdir "$2")
tools=${BENCH_TOOLS_DIR:-}
[ -z "$tools" ] || tools=$(absdir "$tools")
results_root=${BENCH_RESULTS_DIR:-}
if [ -n "$results_root" ]; then mkdir -p "$results_root"; results_root=$(absdir "$results_root"); fi
cd "$(dirname "$0")/.."
tools=${tools:-$PWD/target/release}
results_root=${results_root:-bench/results}

for f in "$old_bin/button-delivery" "$new_bin/button-delivery" "$tools/loadgen" "$tools/fake-button"; do
  [ -x "$f" ] || { echo "$f: not found or not executable" >&2; exit 2; }
done

dur=${BENCH_DURATION:-20}
sustained=${BENCH_SUSTAINED:-60}
drain=${BENCH_DRAIN:-90}
rate_lo=2000
rate_hi=10000

out=$results_root/compare-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
results=$out/results.jsonl
: > "$results"
base=${BENCH_PORT_BASE:-19080}
fake_port=$((base + 2)); svc_port=$((base + 3))
admin=bench-admin-token; ingest=bench-ingest-token; key=sk-bench-key

# Only the processes still running are tracked, so cleanup never signals a reused pid.
svc_pid=; fake_pid=; load_pid=
cleanup() {
  [ -z "$load_pid" ] || kill "$load_pid" 2>/dev/null || true
  [ -z "$svc_pid" ] || kill "$svc_pid" 2>/dev/null || true
  [ -z "$fake_pid" ] || kill "$fake_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_http() {
  for _ in $(seq 1 200); do
    if listening "$1"; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2; exit 1
}

# A leftover process on our ports would be measured instead of the build under test.
port_free() {
  if listening "$1"; then
    echo "port $1 is already in use (a leftover service or fake Button?); set BENCH_PORT_BASE" >&2
    exit 1
  fi
}

# Starts build $1's service on a fresh data directory $out/$2; extra BUTTON_* settings
# as further arguments.
start_service() {
  local bin=$1 name=$2; shift 2
  local dir=$out/$name
  mkdir -p "$dir"
  port_free "$svc_port"
  env BUTTON_SERVER__LISTEN="127.0.0.1:$svc_port" BUTTON_SERVER__DATA_DIR="$dir/data" \
      BUTTON_AUTH__ADMIN_TOKENS="$admin" BUTTON_AUTH__INGEST_TOKENS="$ingest" \
      BUTTON_BUTTON__ORDERS_BASE_URL="http://127.0.0.1:$fake_port" \
      BUTTON_BUTTON__ACTIVITY_URL_TEMPLATE="http://127.0.0.1:$fake_port/app/{application_id}/v1/app/activity" \
      "$@" "$bin/button-delivery" > "$dir/service.log" 2>&1 &
  svc_pid=$!
  wait_http "$svc_port"
  integration=$("$tools/loadgen" setup --url "http://127.0.0.1:$svc_port" --admin-token "$admin" --api-key "$key" --application-id app-bench1)
}

stop_service() {
  local dir=$out/$1
  alive_service "$1"
  kill "$svc_pid" 2>/dev/null || true
  wait "$svc_pid" 2>/dev/null || true
  svc_pid=
  [ "${BENCH_KEEP_LOGS:-0}" = 1 ] || rm -f "$dir/service.log"
  [ "${BENCH_KEEP_DATA:-0}" = 1 ] || rm -rf "$dir/data"
  rmdir "$dir" 2>/dev/null || true
}

# A service that died during a step leaves figures of nothing; stop there.
alive_service() {
  if ! kill -0 "$svc_pid" 2>/dev/null; then
    echo "the service of $1 exited during the step; its log: $out/$1/service.log" >&2
    svc_pid=; exit 1
  fi
}

start_fake() {
  port_free "$fake_port"
  "$tools/fake-button" --listen "127.0.0.1:$fake_port" --api-key "$key" --record-arrivals 2>"$out/fake.log" &
  fake_pid=$!
  wait_http "$fake_port"
}

stop_fake() { kill "$fake_pid" 2>/dev/null || true; wait "$fake_pid" 2>/dev/null || true; fake_pid=; }

# In the background and waited for, so that an interruption stops it at once (bash
# runs a trap only after a foreground command ends; a step may last minutes).
load() {
  "$tools/loadgen" run --out "$results" "$@" &
  load_pid=$!
  wait "$load_pid"
  load_pid=
}

# One side (old|new) of one round: run.sh's steps 2 and 3.
measure() {
  local side=$1 round=$2 bin name
  if [ "$side" = old ]; then bin=$old_bin; else bin=$new_bin; fi

  name=$side-ingest-r$round
  echo "== round $round, $side: 2. durable ingest alone (delivery paused)"
  start_fake
  start_service "$bin" "$name"
  "$tools/loadgen" pause --url "http://127.0.0.1:$svc_port" --admin-token "$admin" --id "$integration"
  load --label "$side-ingest-single-r$round" --url "http://127.0.0.1:$svc_port" --token "$ingest" \
       --connections 256 --duration "$dur" --pid "$svc_pid"
  load --label "$side-ingest-batch-r$round" --url "http://127.0.0.1:$svc_port" --token "$ingest" \
       --batch 100 --connections 16 --duration "$dur" --pid "$svc_pid"
  stop_service "$name"
  stop_fake

  name=$side-e2e-instant-r$round
  echo "== round $round, $side: 3. end to end, instant Button"
  start_fake
  start_service "$bin" "$name"
  load --label "$side-e2e-instant-2k-r$round" --url "http://127.0.0.1:$svc_port" --token "$ingest" \
       --rate "$rate_lo" --duration "$dur" --fake "http://127.0.0.1:$fake_port" --drain "$drain" --pid "$svc_pid"
  load --label "$side-e2e-instant-sustained-r$round" --url "http://127.0.0.1:$svc_port" --token "$ingest" \
       --batch 10 --rate "$rate_hi" --duration "$sustained" --fake "http://127.0.0.1:$fake_port" --drain "$drain" \
       --pid "$svc_pid"
  stop_service "$name"
  stop_fake
}

describe() {
  local dir=$1 sum commit=""
  sum=$(sha256sum "$dir/button-delivery" | cut -c1-12)
  [ ! -f "$dir/COMMIT" ] || commit=", commit $(head -c 12 "$dir/COMMIT")"
  echo "\`$dir/button-delivery\` (sha256 $sum$commit)"
}

cores=$(nproc)
load1=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load1" -v c="$cores" 'BEGIN { exit !(l > 0.25 * c) }'; then
  echo "warning: load average $load1 on $cores cores: the host is not idle, figures will be noisy" >&2
fi
{
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); load average at the start: $load1"
  echo "- machine: $(uname -srm); $cores cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')); $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) memory"
  echo "- old: $(describe "$old_bin")"
  echo "- new: $(describe "$new_bin")"
  if cmp -s "$old_bin/button-delivery" "$new_bin/button-delivery"; then
    echo "- old and new are the same binary: the ratios show the noise of this host"
  fi
  echo "- tools: \`$tools\` (loadgen, fake-button)"
  echo "- steps: ingest ${dur} s each; end to end ${rate_lo}/s for ${dur} s and ${rate_hi}/s for ${sustained} s, drain up to ${drain} s; $rounds round(s)"
} > "$out/machine.md"

for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order=(old new); else order=(new old); fi
  echo "- round $round: ${order[0]}, then ${order[1]}" >> "$out/order.md"
  for side in "${order[@]}"; do
    measure "$side" "$round"
  done
done

python3 - "$results" "$rounds" "$out/machine.md" "$out/order.md" > "$out/compare.md" <<'PY'
import json
import statistics
import sys

results, rounds, machine, order = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = {}
with open(results) as f:
    for line in f:
        line = line.strip()
        if line:
            r = json.loads(line)
            runs[r.get("label", "")] = r


def get(r, *path):
    for p in path:
        if not isinstance(r, dict) or p not in r:
            return None
        r = r[p]
    return r


def cpu_us_per_event(r):
    cpu, events = get(r, "service", "cpu_s_total"), get(r, "events_accepted")
    return cpu / events * 1e6 if cpu is not None and events else None


events = ("events/s", "higher", lambda r: get(r, "events_per_s"), "{:,.0f}")
cores = ("service CPU cores", "", lambda r: get(r, "service", "cpu_cores_during_load"), "{:.2f}")
per_event = ("service CPU us/event", "lower", cpu_us_per_event, "{:.1f}")
e2e = [
    ("delivered/s", "higher", lambda r: get(r, "delivery", "delivered_per_s"), "{:,.0f}"),
    ("lag ms p99", "lower", lambda r: get(r, "delivery", "lag_ms", "p99"), "ms"),
    ("ingest ms p99", "lower", lambda r: get(r, "latency_ms", "p99"), "ms"),
    cores,
    per_event,
]
steps = [
    ("ingest-single", "2. durable ingest, single events (256 conns)", [events, cores, per_event]),
    ("ingest-batch", "2. durable ingest, batches of 100 (16 conns)", [events, cores, per_event]),
    ("e2e-instant-2k", "3. end to end, 2,000 events/s single", e2e),
    ("e2e-instant-sustained", "3. end to end, 10,000 events/s in batches of 10", e2e),
]


def fmt(spec, v):
    if v is None:
        return "-"
    if spec == "ms":
        spec = "{:.2f}" if v < 100 else "{:,.0f}"
    return spec.format(v)


out = []
out.append("# A/B comparison: old vs new\n")
out.append(open(machine).read().rstrip())
out.append(open(order).read().rstrip())
out.append("")
out.append("Rounds r1 / r2 / ...; median of the rounds; ratio new/old of the medians. "
           "\"better\" says which way is an improvement. CPU cores are the service's during "
           "the load; CPU us/event counts all its CPU until the step ended (deliveries included).\n")
each = "r1" if rounds == 1 else "r1..r%d" % rounds
out.append("| step | figure | better | old (%s) | new (%s) | old median | new median | new/old |" % (each, each))
out.append("|---|---|---|---|---|---:|---:|---:|")
problems = []
for step, title, figures in steps:
    for i, (name, better, pick, spec) in enumerate(figures):
        cells, medians = [], []
        for side in ("old", "new"):
            values = [pick(runs.get("%s-%s-r%d" % (side, step, n), {})) for n in range(1, rounds + 1)]
            cells.append(" / ".join(fmt(spec, v) for v in values))
            present = [v for v in values if v is not None]
            medians.append(statistics.median(present) if present else None)
        old, new = medians
        ratio = "-" if old in (None, 0) or new is None else "%.3f" % (new / old)
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            title if i == 0 else "", name, better or "-", cells[0], cells[1], fmt(spec, old), fmt(spec, new), ratio))
    for side in ("old", "new"):
        for n in range(1, rounds + 1):
            label = "%s-%s-r%d" % (side, step, n)
            r = runs.get(label)
            if r is None:
                problems.append("%s: no result" % label)
                continue
            bad = []
            for what, v in (("non-2xx answers", get(r, "non_2xx")),
                            ("transport errors", get(r, "transport_errors")),
                            ("events not delivered within the drain time (lag and delivered/s cover the others only)",
                             get(r, "delivery", "lost")),
                            ("events delivered twice", get(r, "delivery", "duplicates"))):
                if v:
                    bad.append("%s %s" % (v, what))
            if bad:
                problems.append("%s: %s" % (label, ", ".join(bad)))
out.append("")
if problems:
    out.append("Figures to read with care:\n")
    out.extend("- " + p for p in problems)
else:
    out.append("No errors, nothing undelivered, no duplicates in any run.")
print("\n".join(out))
PY

echo
cat "$out/compare.md"
echo
echo "results: $out/compare.md, raw figures in $results"
