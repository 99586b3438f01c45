# Sourced by the bench scripts: the processes they start (in `pids`), stopped when the
# script exits, and waiting for a port to listen.

pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# wait_http PORT [LOG]: waits up to ${wait_http_seconds:-10} s for something to listen
# on 127.0.0.1:PORT; otherwise exits, showing the end of LOG if there is one.
wait_http() {
  for _ in $(seq 1 $((${wait_http_seconds:-10} * 20))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  if [ -n "${2:-}" ] && [ -f "$2" ]; then echo "-- the end of $2:" >&2; tail -n 20 "$2" >&2; fi
  exit 1
}
