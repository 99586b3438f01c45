#!/usr/bin/env bash
# CI: build the project's Docker image and smoke-test a container of it, on a machine
# that reaches Debian's apt mirror and the crate registry but no image registry.
#
#   bash .ci/docker.sh
#
# How, with nothing pulled from a registry:
#   1. Debian's docker.io gives a dockerd of our own: its own socket, data root and exec
#      root under $WORK, --iptables=false --ip-forward=false (no host firewall changes).
#   2. debootstrap --variant=minbase bookworm, imported, is the local base image.
#   3. Two stand-ins for the Dockerfile's base images are built from it: a Rust builder
#      carrying this machine's toolchain (`rustc --print sysroot`) and a distroless-like
#      runtime (glibc, libgcc, CA bundle, user 65532, no shell).
#   4. The project's Dockerfile is built with Debian's /usr/bin/docker and BuildKit,
#      --network host, the stand-ins passed as RUST_IMAGE / RUNTIME_IMAGE build args.
#   5. A container of it must: answer 200 on /healthz and /readyz, log only JSON lines,
#      run as uid 65532, turn healthy, write the generated admin token into /data, and
#      exit 0 on SIGTERM (docker stop) within the grace period.
#
# Runs as root. Installs docker.io and debootstrap with apt if missing. If dockerd cannot
# start here, it says so and fails. dockerd is always stopped on exit.
#
# Cached between runs under $WORK (all safe to delete: `rm -rf target/docker-ci`): the
# debootstrap root file system, and dockerd's data root, which holds the stand-in images
# and the cargo registry/target cache mounts of the image build.
#
# Environment: DOCKER_CI_DIR (work dir, default target/docker-ci, which .dockerignore
# keeps out of the build context), DEBIAN_MIRROR (default: the one apt uses here).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

WORK=${DOCKER_CI_DIR:-$ROOT/target/docker-ci}
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

# Debian's docker 20.10 client drives the daemon's built-in BuildKit. A newer docker
# client elsewhere on PATH (e.g. /usr/local/bin/docker 28.x) refuses DOCKER_BUILDKIT=1
# without the buildx plugin, and the legacy builder rejects RUN --mount.
DOCKER=/usr/bin/docker
export DOCKER_HOST=unix://$WORK/docker.sock DOCKER_BUILDKIT=1

BASE_IMAGE=local/debian:bookworm-minbase
RUST_IMAGE=local/rust-builder:ci
RUNTIME_IMAGE=local/distroless-cc:nonroot
IMAGE=button-delivery:ci
NAME=button-delivery-ci-$$
VOLUME=button-delivery-ci-data-$$
LABEL=button-delivery-ci=smoke   # on the smoke container and volume, to sweep leftovers
STOP_TIMEOUT=30                  # > server.shutdown_grace (20s by default)

# ---------------------------------------------------------------------------- helpers
T0=$EPOCHREALTIME
TIMINGS=()
elapsed() { # elapsed START -> seconds since START, one decimal
  awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}
step() { # step "label" function args...
  local label=$1 start=$EPOCHREALTIME
  shift
  printf '\n== %s\n' "$label"
  "$@"
  local took
  took=$(elapsed "$start")
  TIMINGS+=("$(printf '%7ss  %s' "$took" "$label")")
  printf '== %s: %ss\n' "$label" "$took"
}
fail() { echo "docker CI: $*" >&2; exit 1; }

# -------------------------------------------------------------------------- cleanup
DOCKERD_PID=
HAD_DOCKER0=
cleanup() {
  local rc=$?
  set +e
  if [ -n "$DOCKERD_PID" ]; then
    $DOCKER rm -f "$NAME" >/dev/null 2>&1
    $DOCKER volume rm "$VOLUME" >/dev/null 2>&1
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
      echo "dockerd ($DOCKERD_PID) did not stop within 30s; killing it" >&2
      kill -KILL "$DOCKERD_PID" 2>/dev/null
      sleep 1
    fi
    # What dockerd leaves behind on the host: the bridge it created (only if it was
    # not there before us) and the mounts under its exec and data roots.
    [ -z "$HAD_DOCKER0" ] && ip link del docker0 2>/dev/null
    umount "$WORK/docker-exec/netns/default" 2>/dev/null
    findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r | while read -r m; do umount -l "$m"; done
    rm -f "$WORK/docker.sock" "$WORK/dockerd.pidfile"
    echo "dockerd ($DOCKERD_PID) stopped"
  fi
  printf '\n== timings\n'
  [ ${#TIMINGS[@]} -eq 0 ] || printf '%s\n' "${TIMINGS[@]}"
  printf '%7ss  total\n' "$(elapsed "$T0")"
  [ "$rc" = 0 ] && echo "docker CI: OK" || echo "docker CI: FAILED (exit $rc)" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------- steps
install_packages() {
  local missing=()
  { command -v dockerd >/dev/null && [ -x /usr/bin/docker ]; } || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  command -v ip >/dev/null || missing+=(iproute2)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
  dockerd --version
  $DOCKER --version
}

start_dockerd() {
  mkdir -p "$WORK"
  local pidfile=$WORK/dockerd.pidfile
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    fail "a dockerd (pid $(cat "$pidfile")) already runs on $WORK; is another run in progress?"
  fi
  ip link show docker0 >/dev/null 2>&1 && HAD_DOCKER0=1
  dockerd --storage-driver=overlay2 \
    --data-root="$WORK/docker-data" --exec-root="$WORK/docker-exec" \
    --pidfile="$pidfile" -H "$DOCKER_HOST" \
    --iptables=false --ip-forward=false \
    >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 120); do
    if $DOCKER info >/dev/null 2>&1; then
      echo "dockerd pid $DOCKERD_PID, $($DOCKER info -f '{{.ServerVersion}}, {{.Driver}}')"
      # Leftovers of an interrupted earlier run on a persisted data root.
      $DOCKER ps -aq --filter "label=$LABEL" | xargs -r $DOCKER rm -f >/dev/null
      $DOCKER volume ls -q --filter "label=$LABEL" | xargs -r $DOCKER volume rm >/dev/null
      return 0
    fi
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.25
  done
  echo "---- $WORK/dockerd.log (last 30 lines)" >&2
  tail -30 "$WORK/dockerd.log" >&2
  fail "dockerd cannot start on this machine, so the Docker image was NOT built or tested"
}

# local base image: a minbase Debian bookworm from the apt mirror (cached in $WORK).
BASE_FRESH=
base_image() {
  if [ ! -e "$WORK/rootfs.done" ]; then
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$WORK/rootfs" "$MIRROR" \
      >"$WORK/debootstrap.log" 2>&1 || { tail -30 "$WORK/debootstrap.log" >&2; fail "debootstrap failed"; }
    rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
    touch "$WORK/rootfs.done"
    BASE_FRESH=1
  else
    echo "root file system cached in $WORK/rootfs"
  fi
  if [ -n "$BASE_FRESH" ] || ! $DOCKER image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    tar -C "$WORK/rootfs" -c . | $DOCKER import -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    BASE_FRESH=1
  fi
  $DOCKER images --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$BASE_IMAGE"
}

# Stand-in for gcr.io/distroless/cc-debian12:nonroot: the files of libc6 and libgcc-s1,
# the CA bundle, zoneinfo, passwd/group with nonroot (65532); no shell, no apt.
runtime_image() {
  if [ -z "$BASE_FRESH" ] && $DOCKER image inspect "$RUNTIME_IMAGE" >/dev/null 2>&1; then
    echo "cached"; return 0
  fi
  local rootfs=$WORK/rootfs dir=$WORK/distroless
  rm -rf "$dir" && mkdir -p "$dir"/usr/{lib,lib64,bin,sbin}
  ln -s usr/lib "$dir/lib" && ln -s usr/lib64 "$dir/lib64"
  ln -s usr/bin "$dir/bin" && ln -s usr/sbin "$dir/sbin"
  # dpkg's file lists, read from the root file system (no chroot needed).
  { cat "$rootfs"/var/lib/dpkg/info/{libc6,libgcc-s1}:*.list \
      | grep -vE '^/usr/share/(doc|lintian|man|info)'
    echo /etc/ssl/certs/ca-certificates.crt; } |
    while read -r f; do
      if [ -e "$rootfs$f" ] && [ ! -d "$rootfs$f" ]; then echo ".$f"; fi
    done >"$WORK/distroless.list"
  tar -C "$rootfs" -cf - --no-recursion -T "$WORK/distroless.list" | tar -C "$dir" -xf -
  cp -a "$rootfs/usr/share/zoneinfo" "$dir/usr/share/"
  mkdir -p "$dir"/{tmp,etc,home/nonroot} && chmod 1777 "$dir/tmp"
  chown 65532:65532 "$dir/home/nonroot"
  printf '%s\n' root:x:0:0:root:/root:/sbin/nologin \
    nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin \
    nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin >"$dir/etc/passwd"
  printf '%s\n' root:x:0: nobody:x:65534: nonroot:x:65532: >"$dir/etc/group"
  tar -C "$dir" -c . | $DOCKER import -c 'USER 65532:65532' -c 'WORKDIR /home/nonroot' - \
    "$RUNTIME_IMAGE" >/dev/null
  rm -rf "$dir"
  $DOCKER images --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$RUNTIME_IMAGE"
}

# Stand-in for rust:1.95-slim-bookworm: the local base, gcc, and this machine's
# toolchain (bin, lib, libexec: ~600 MB). Rebuilt when the toolchain changes.
rust_image() {
  local sysroot toolchain_id
  sysroot=$(rustc --print sysroot)
  toolchain_id=$(rustc -vV | sha256sum | cut -c1-16)
  if [ -z "$BASE_FRESH" ] && [ "$($DOCKER image inspect -f '{{index .Config.Labels "ci.toolchain"}}' \
      "$RUST_IMAGE" 2>/dev/null)" = "$toolchain_id" ]; then
    echo "cached ($(rustc --version))"; return 0
  fi
  local ctx=$WORK/rustctx
  rm -rf "$ctx" && mkdir -p "$ctx/rust"
  # Hard links where the toolchain is on the same file system, else a copy.
  cp -al "$sysroot"/{bin,lib,libexec} "$ctx/rust/" 2>/dev/null ||
    { rm -rf "$ctx/rust" && mkdir -p "$ctx/rust" && cp -a "$sysroot"/{bin,lib,libexec} "$ctx/rust/"; }
  # This machine may reach the crate registry through a TLS-inspecting proxy whose CA
  # is only in the host's bundle: the builder (not the runtime image) gets that bundle.
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca-certificates.crt"
  cat >"$ctx/Dockerfile" <<'EOF'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG TOOLCHAIN_ID
LABEL ci.toolchain=${TOOLCHAIN_ID}
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY host-ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY rust/ /usr/local/rust/
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo/bin && rustc --version && cargo --version
EOF
  # --network host: with --iptables=false the default bridge has no NAT to the outside.
  $DOCKER build --network host --progress=plain \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg TOOLCHAIN_ID="$toolchain_id" \
    -t "$RUST_IMAGE" "$ctx" >"$WORK/build-rust-image.log" 2>&1 ||
    { tail -30 "$WORK/build-rust-image.log" >&2; fail "building the Rust builder stand-in failed"; }
  rm -rf "$ctx"
  $DOCKER images --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$RUST_IMAGE"
}

# The project's own Dockerfile, unchanged, with the stand-ins as its base images.
build_image() {
  $DOCKER build --network host --progress=plain \
    --build-arg RUST_IMAGE="$RUST_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" \
    -t "$IMAGE" "$ROOT" >"$WORK/build-image.log" 2>&1 ||
    { tail -40 "$WORK/build-image.log" >&2; fail "docker build of the project's Dockerfile failed (log: $WORK/build-image.log)"; }
  grep -E 'Finished|Compiling button-delivery' "$WORK/build-image.log" | tail -2 || true
  # The previous run's image, now untagged, would pile up in the persisted data root.
  $DOCKER image prune -f >/dev/null
  $DOCKER images --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE"
}

# Every line the container wrote, on stdout and on stderr, is a JSON object.
check_json_logs() {
  $DOCKER logs "$NAME" >"$WORK/smoke-stdout.log" 2>"$WORK/smoke-stderr.log"
  python3 - "$WORK/smoke-stdout.log" "$WORK/smoke-stderr.log" <<'EOF'
import json, sys
total = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                if not isinstance(json.loads(line), dict):
                    raise ValueError("not an object")
            except ValueError as e:
                sys.exit(f"{path}:{n}: not a JSON object ({e}): {line.rstrip()[:300]}")
            total += 1
if total == 0:
    sys.exit("the container wrote no log lines")
print(f"{total} log lines, all JSON objects")
EOF
}

smoke_test() {
  local port code pid uids token status i start
  $DOCKER volume create --label "$LABEL" "$VOLUME" >/dev/null
  # An ephemeral host port on loopback, published by docker-proxy from this container.
  # (docker run warns that IPv4 forwarding is off, as asked; kept out of the output.)
  $DOCKER run -d --name "$NAME" --label "$LABEL" -p 127.0.0.1::8084 -v "$VOLUME:/data" \
    "$IMAGE" >/dev/null 2>"$WORK/docker-run.err" ||
    { cat "$WORK/docker-run.err" >&2; fail "docker run failed"; }
  port=$($DOCKER port "$NAME" 8084/tcp | head -1 | sed 's/.*://')
  echo "container $NAME on 127.0.0.1:$port"

  for i in $(seq 1 120); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && break
    [ "$($DOCKER inspect -f '{{.State.Running}}' "$NAME")" = true ] ||
      { $DOCKER logs "$NAME" 2>&1 | tail -20 >&2; fail "the container exited"; }
    sleep 0.25
  done
  for path in /healthz /readyz; do
    code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$path" || true)
    echo "GET $path -> $code"
    [ "$code" = 200 ] || fail "GET $path answered $code, not 200"
  done

  # The service's process itself runs as 65532 (real, effective, saved, fs uid).
  pid=$($DOCKER inspect -f '{{.State.Pid}}' "$NAME")
  uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
  echo "process $pid uids: $uids (image user $($DOCKER inspect -f '{{.Config.User}}' "$NAME"))"
  [ "$uids" = "65532 65532 65532 65532" ] || fail "the process runs as uid $uids, not 65532"

  token=$($DOCKER cp "$NAME:/data/admin-token" - | tar -xO)
  [ -n "$token" ] || fail "/data/admin-token is empty"
  echo "generated admin token in /data/admin-token (${#token} characters)"

  start=$EPOCHREALTIME
  for i in $(seq 1 90); do
    status=$($DOCKER inspect -f '{{.State.Health.Status}}' "$NAME")
    [ "$status" = healthy ] || [ "$status" = unhealthy ] && break
    sleep 1
  done
  echo "healthcheck: $status after $(elapsed "$start")s"
  [ "$status" = healthy ] ||
    fail "healthcheck reports $status: $($DOCKER inspect -f '{{json .State.Health.Log}}' "$NAME")"

  # SIGTERM (docker stop): a clean exit (0) within the grace, not the SIGKILL after it.
  start=$EPOCHREALTIME
  $DOCKER stop -t "$STOP_TIMEOUT" "$NAME" >/dev/null
  code=$($DOCKER inspect -f '{{.State.ExitCode}}' "$NAME")
  echo "docker stop: exit code $code after $(elapsed "$start")s"
  [ "$code" = 0 ] || { $DOCKER logs "$NAME" 2>&1 | tail -10 >&2; fail "exit code $code after SIGTERM, not 0"; }

  # After the stop, so the shutdown lines are checked too.
  check_json_logs || fail "the container's logs are not all JSON (see $WORK/smoke-*.log)"
  $DOCKER logs "$NAME" 2>&1 | tail -3

  $DOCKER rm "$NAME" >/dev/null
  $DOCKER volume rm "$VOLUME" >/dev/null
}

[ "$(id -u)" = 0 ] || fail "must run as root (it installs packages and runs dockerd)"
step "install docker.io, debootstrap" install_packages
step "start dockerd" start_dockerd
step "base image (debootstrap minbase bookworm)" base_image
step "runtime stand-in image (distroless-like)" runtime_image
step "Rust builder stand-in image (host toolchain)" rust_image
step "docker build (project Dockerfile)" build_image
step "smoke test the container" smoke_test
