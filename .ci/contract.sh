#!/usr/bin/env bash
# Contract test: schemathesis, generated from the service's own /openapi.json, against
# the running service, with every check: what the document calls valid must be
# accepted, what it calls invalid refused with a 4xx, every answer must be documented
# (status, headers, body schema), and nothing may answer 5xx.
#
#   .ci/contract.sh [BINARY]      (default: $BUTTON_BIN or target/debug/button-delivery)
#
# Takes an already-built binary (and fake-button beside it, or $FAKE_BUTTON_BIN) and
# builds nothing. Installs schemathesis (pinned) into a venv under target/ if missing;
# starts fake-button and the service on free ports with a fresh SQLite data dir, Button
# pointed at the fake; runs schemathesis twice, once with the admin token on the admin
# and operations routes, once with the ingest token on the ingest and tracking routes;
# fails if either finds anything. Always stops both processes.
#
# CONTRACT_MAX_EXAMPLES (default 25) bounds the examples per operation and phase;
# CONTRACT_SEED (default fixed) makes a run reproducible.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
schemathesis_version=4.32.5
bin=${1:-${BUTTON_BIN:-target/debug/button-delivery}}
fake_bin=${FAKE_BUTTON_BIN:-$(dirname "$bin")/fake-button}
examples=${CONTRACT_MAX_EXAMPLES:-25}
seed=${CONTRACT_SEED:-20261126}
venv=${CONTRACT_VENV:-target/contract-venv}

for binary in "$bin" "$fake_bin"; do
  if [ ! -x "$binary" ]; then
    echo "contract: no executable at $binary: build first (cargo build --workspace --locked)" >&2
    exit 1
  fi
done

# CPython before 3.11.8 can fail inside Hypothesis while describing a strategy ("AST
# constructor recursion depth mismatch", CPython gh-106905), which schemathesis reports
# as a runtime error: take a newer Python (pyenv's, if the default one is older).
new_enough='import sys; sys.exit(sys.version_info < (3, 11, 8))'
pick_python() {
  local candidate
  for candidate in python3.13 python3.12 python3; do
    if "$candidate" -c "$new_enough" 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  if command -v pyenv >/dev/null; then
    for candidate in $(pyenv versions --bare 2>/dev/null | sort -rV); do
      candidate="$(pyenv root)/versions/$candidate/bin/python3"
      if "$candidate" -c "$new_enough" 2>/dev/null; then
        printf '%s\n' "$candidate"
        return 0
      fi
    done
  fi
  return 1
}
if ! "$venv/bin/python" -c "$new_enough" 2>/dev/null \
   || ! "$venv/bin/st" --version 2>/dev/null | grep -qx "st, version $schemathesis_version"; then
  python=$(pick_python) || {
    echo "contract: schemathesis needs Python 3.11.8 or newer; none found" >&2
    exit 1
  }
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

st="$PWD/$venv/bin/st"
case $venv in /*) st="$venv/bin/st" ;; esac
work=$(mktemp -d)
fake_pid=""
service_pid=""
finish() {
  status=$?
  for pid in "$service_pid" "$fake_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ "$status" -ne 0 ] && [ -f "$work/service.log" ]; then
    echo "contract: the service's last log lines:" >&2
    tail -n 20 "$work/service.log" >&2 || true
  fi
  rm -rf "$work"
  echo "contract: took $(($(date +%s) - started)) s"
  exit "$status"
}
trap finish EXIT

# Waits up to 30 s for a regex in a log file and prints its first match.
await_line() {
  local file=$1 pattern=$2 pid=$3 match
  for _ in $(seq 300); do
    match=$(grep -oE "$pattern" "$file" 2>/dev/null | head -n 1 || true)
    if [ -n "$match" ]; then
      printf '%s\n' "$match"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "contract: the process writing $file exited:" >&2
      cat "$file" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "contract: nothing matched $pattern in $file within 30 s" >&2
  return 1
}

"$fake_bin" --listen 127.0.0.1:0 2>"$work/fake.log" &
fake_pid=$!
fake_addr=$(await_line "$work/fake.log" 'http://127\.0\.0\.1:[0-9]+' "$fake_pid")

# Only these settings: none of the caller's BUTTON_* variables leak in.
env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
  BUTTON_SERVER__LISTEN=127.0.0.1:0 \
  BUTTON_SERVER__DATA_DIR="$work/data" \
  BUTTON_SERVER__ADMIN_RATE_LIMIT=0 \
  BUTTON_DATABASE__URL="sqlite://$work/data/button-delivery.db" \
  BUTTON_BUTTON__ORDERS_BASE_URL="$fake_addr" \
  BUTTON_BUTTON__ACTIVITY_URL_TEMPLATE="$fake_addr/app/{application_id}/v1/app/activity" \
  BUTTON_LOG__FORMAT=json \
  "$bin" >"$work/service.log" 2>&1 &
service_pid=$!
addr=$(await_line "$work/service.log" '"addr":"[^"]+"' "$service_pid" | cut -d'"' -f4)
base="http://$addr"
for token in admin-token ingest-token; do
  await_line "$work/data/$token" '.+' "$service_pid" >/dev/null
done
admin_token=$(<"$work/data/admin-token")
ingest_token=$(<"$work/data/ingest-token")

# An integration, so that the ingest routes queue deliveries to the fake, and
# /v1/integrations/{id}/events reaches one.
integration=$(curl --silent --show-error --fail-with-body \
  -H "Authorization: Bearer $admin_token" -H 'Content-Type: application/json' \
  -d '{"config": {"application_id": "app-contract1", "api_key": "sk-test-valid"}}' \
  "$base/v1/admin/integration-catalog/button/install" | grep -oE '"id":"int_[0-9a-z]+"' | cut -d'"' -f4)

cat >"$work/schemathesis.toml" <<TOML
# A blueprint is a program: whether one compiles, and which event names it takes
# (Test Event), cannot be said in JSON Schema. There a schema-valid body may get 422,
# as documented; every other check stays on.
[[operations]]
include-name = ["PUT /v1/admin/integrations/{id}/blueprint", "POST /v1/admin/integrations/{id}/test-event"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

# The integration installed above, so the per-integration ingest routes get past 404.
[[operations]]
include-path-regex = "^/v1/integrations/"
parameters = { "path.id" = "$integration" }
TOML

run() {
  local what=$1 token=$2 paths=$3
  printf '\n== schemathesis: %s ==\n' "$what"
  # From the temp dir, so schemathesis's own cache (.schemathesis/) stays out of the tree.
  (cd "$work" && "$st" --config-file "$work/schemathesis.toml" run "$base/openapi.json" \
    --checks all \
    --max-examples "$examples" \
    --seed "$seed" \
    --workers 2 \
    --request-timeout 10 \
    --generation-database none \
    --no-color \
    --header "Authorization: Bearer $token" \
    --include-path-regex "$paths")
}

# Ingest first: the admin run deletes integrations, the one above among them.
failed=0
run "ingest token: event ingest and tracking routes" "$ingest_token" \
  '^/v1/(events|integrations/[^/]+/events|batch$|track$|page$|screen$|identify$|group$|alias$)' || failed=1
run "admin token: admin and operations routes" "$admin_token" \
  '^/(v1/admin/|healthz$|readyz$|metrics$|openapi\.json$)' || failed=1

if [ "$failed" -ne 0 ]; then
  echo "contract: schemathesis found failures (above)" >&2
  exit 1
fi
echo "contract: schemathesis found no failure"
