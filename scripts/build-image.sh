#!/usr/bin/env bash
# Build the gopher-updater image without a Docker daemon, then smoke-test it.
#
#   scripts/build-image.sh                                  # bootstrap a local Debian base
#   BASE_IMAGE=python:3.12-slim scripts/build-image.sh      # use a base you can pull
#
# Why the bootstrap: public base images cannot be pulled on some build hosts (CI sandboxes,
# air-gapped runners) while the Debian mirror can be reached through apt's proxy. When
# BASE_IMAGE is unset, a minimal bookworm with python3/venv/pip is debootstrapped from the
# same mirror apt uses and imported as localhost/debian-python:bookworm (built once, then
# reused). This needs root. It is slow (minutes) and is not part of CI.
#
# Environment:
#   IMAGE           tag to build                      (default: gopher-updater)
#   BASE_IMAGE      base for both stages              (default: bootstrapped local base)
#   STORAGE_DRIVER  buildah storage driver            (default: vfs, works inside containers)
#   DEBIAN_MIRROR   mirror for debootstrap            (default: first bookworm URI in apt's sources)
#   WORK_DIR        scratch dir for the bootstrap     (default: /var/tmp/gopher-updater-image)
#   SMOKE           1 = smoke-test the built image    (default: 1)
#   SMOKE_PORT      loopback port for the run check   (default: 18080)
#
# Smoke test (SMOKE=1): `gopher-updater --help` and `--version` must succeed, `check` with no
# configuration must fail cleanly (exit 1 or 2, no traceback), and — when root — the daemon
# must start as UID 10001 on a read-only bind of the image's root filesystem and answer
# /healthz, which is what Kubernetes' readOnlyRootFilesystem will demand.
set -euo pipefail

cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-gopher-updater}
STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
WORK_DIR=${WORK_DIR:-/var/tmp/gopher-updater-image}
SMOKE=${SMOKE:-1}
SMOKE_PORT=${SMOKE_PORT:-18080}
LOCAL_BASE=localhost/debian-python:bookworm
mkdir -p "$WORK_DIR"

bah() { buildah --storage-driver "$STORAGE_DRIVER" "$@"; }
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build-image: %s\n' "$*" >&2; exit 1; }

command -v buildah >/dev/null || die "buildah is not installed (apt-get install buildah)"

# --- local base image --------------------------------------------------------------------

apt_mirror() {
    # The first Debian URI apt already uses for bookworm (deb822 or one-line format).
    local uri
    uri=$(awk '
        /^URIs:/   { u = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm" && u != "") { print u; exit } }
    ' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [[ -z $uri ]]; then
        uri=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

bootstrap_base() {
    [[ $(id -u) -eq 0 ]] || die "bootstrapping $LOCAL_BASE needs root (or set BASE_IMAGE)"
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap"
        apt-get install -y --no-install-recommends debootstrap >/dev/null \
            || { apt-get update >/dev/null && apt-get install -y --no-install-recommends debootstrap >/dev/null; }
    fi
    local mirror rootfs tarball ctr
    mirror=${DEBIAN_MIRROR:-$(apt_mirror)}
    rootfs="$WORK_DIR/rootfs"
    tarball="$WORK_DIR/rootfs.tar"
    rm -rf "$rootfs" "$tarball"
    mkdir -p "$rootfs"

    log "debootstrap bookworm from $mirror (minbase + python3, python3-venv, python3-pip)"
    debootstrap --variant=minbase \
        --include=ca-certificates,python3,python3-venv,python3-pip \
        bookworm "$rootfs" "$mirror" >"$WORK_DIR/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see $WORK_DIR/debootstrap.log"

    # Trust the same extra CAs as this host (TLS-intercepting egress proxies), so pip inside
    # the build can reach the package index the host reaches. This base is a local build
    # aid; an image for release should be built FROM a real, published base.
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        log "adding this host's extra CA certificates to the base"
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null
    fi
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*

    log "importing rootfs as $LOCAL_BASE"
    # /dev, /proc and /sys stay as empty directories: the runtime provides them.
    tar -C "$rootfs" --numeric-owner \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$tarball" .
    ctr=$(bah from scratch)
    bah add "$ctr" "$tarball" / >/dev/null
    bah config \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 \
        --cmd '["python3"]' \
        --label org.opencontainers.image.description="debootstrapped Debian bookworm + python3 (local build base)" \
        "$ctr"
    bah commit --quiet "$ctr" "$LOCAL_BASE" >/dev/null
    bah rm "$ctr" >/dev/null
    rm -rf "$rootfs" "$tarball"
}

if [[ -z ${BASE_IMAGE:-} ]]; then
    if bah inspect --type image "$LOCAL_BASE" >/dev/null 2>&1; then
        log "reusing local base $LOCAL_BASE (remove it with: buildah --storage-driver $STORAGE_DRIVER rmi $LOCAL_BASE)"
    else
        bootstrap_base
    fi
    BASE_IMAGE=$LOCAL_BASE
fi

# --- build ---------------------------------------------------------------------------------

VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' gopher_updater/__init__.py)
log "building $IMAGE (version ${VERSION:-unknown}) FROM $BASE_IMAGE"
# --format docker keeps the HEALTHCHECK (the OCI image format has no field for it).
bah bud \
    --isolation chroot \
    --format docker \
    -f containers/Containerfile \
    --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --build-arg VERSION="${VERSION:-0.0.0+unknown}" \
    -t "$IMAGE" \
    .

[[ $SMOKE == 1 ]] || exit 0

# --- smoke test ----------------------------------------------------------------------------

ctr=$(bah from --quiet "$IMAGE")
mnt=""
daemon_pid=""
cleanup() {
    if [[ -n $daemon_pid ]]; then
        # The daemon itself (unshare ignores SIGTERM while waiting for it).
        [[ -s ${pidfile:-} ]] && kill -TERM "$(cat "$pidfile")" 2>/dev/null
        wait "$daemon_pid" 2>/dev/null || true
    fi
    if [[ -n $mnt ]]; then bah umount "$ctr" >/dev/null 2>&1 || true; fi
    bah rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT

run_in() { bah run --isolation chroot "$ctr" -- "$@"; }

log "smoke: image runs as UID $(run_in id -u)"
[[ $(run_in id -u) == 10001 ]] || die "image does not run as UID 10001"

log "smoke: gopher-updater --help"
run_in gopher-updater --help >/dev/null || die "--help failed"

log "smoke: gopher-updater --version"
run_in gopher-updater --version || die "--version failed"

log "smoke: no pip and no test rig in the image"
if run_in sh -c 'command -v pip || command -v pip3 || python3 -c "import pip"' >/dev/null 2>&1; then
    die "the runtime image still carries pip"
fi
if run_in python3 -c "import gopher_updater.testing" >/dev/null 2>&1; then
    die "the runtime image still carries gopher_updater.testing"
fi
set +e
demo_err=$(run_in gopher-updater demo 2>&1 >/dev/null)
demo_rc=$?
set -e
[[ $demo_rc != 0 ]] || die "demo succeeded without the test rig?"
if grep -q 'Traceback' <<<"$demo_err"; then die "demo printed a traceback: $demo_err"; fi

log "smoke: gopher-updater check without configuration must fail cleanly"
set +e
check_err=$(run_in gopher-updater check 2>&1 >/dev/null)
check_rc=$?
set -e
printf '%s\n' "$check_err" | sed 's/^/    /' >&2
[[ $check_rc == 1 || $check_rc == 2 ]] || die "check exited $check_rc, expected 1 or 2"
if grep -q 'Traceback' <<<"$check_err"; then die "check printed a traceback"; fi

if [[ $(id -u) -ne 0 ]]; then
    log "smoke: skipping the read-only run check (needs root)"
    exit 0
fi

log "smoke: daemon on a read-only root filesystem as 10001:10001, GET /healthz on 127.0.0.1:$SMOKE_PORT"
python3 -c "import socket; socket.create_server(('127.0.0.1', $SMOKE_PORT)).close()" 2>/dev/null \
    || die "127.0.0.1:$SMOKE_PORT is in use; set SMOKE_PORT to a free port"
mnt=$(bah mount "$ctr")
# A private mount namespace: the read-only bind and /dev, /proc never show on the host.
# Nothing on the loopback answers for the chain or the registry, so only liveness is
# expected; the daemon must still start and serve /healthz.
# unshare blocks SIGTERM while it waits, so the daemon's own PID is recorded and signalled.
pidfile="$WORK_DIR/smoke-run.pid"
rm -f "$pidfile"
unshare --mount --kill-child=SIGTERM sh -c '
    set -e
    mnt=$1; port=$2; pidfile=$3
    mount --bind "$mnt" "$mnt"
    mount --rbind /dev "$mnt/dev"
    mount --rbind /proc "$mnt/proc"
    mount -o remount,bind,ro "$mnt"
    echo $$ >"$pidfile"    # exec keeps the PID: this is the daemon
    exec chroot --userspec=10001:10001 "$mnt" /usr/bin/env -i \
        PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
        PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
        RPC_URL=http://127.0.0.1:9 REGISTRY_URL=http://127.0.0.1:9 \
        DOCKERHUB_USER=smoke DOCKERHUB_PASSWORD=smoke-not-a-secret \
        REPO_PATH=smoke/node TARGET_PREFIX=mainnet- \
        HTTP_HOST=127.0.0.1 HTTP_PORT="$port" DRY_RUN=true \
        gopher-updater run
' smoke "$mnt" "$SMOKE_PORT" "$pidfile" >"$WORK_DIR/smoke-run.log" 2>&1 &
daemon_pid=$!

healthy=""
for _ in $(seq 1 40); do
    if ! kill -0 "$daemon_pid" 2>/dev/null; then break; fi
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$SMOKE_PORT/healthz', timeout=1)" 2>/dev/null; then
        healthy=1
        break
    fi
    sleep 0.5
done
if [[ -z $healthy ]]; then
    sed 's/^/    /' "$WORK_DIR/smoke-run.log" >&2 || true
    die "daemon did not answer /healthz on a read-only root (log: $WORK_DIR/smoke-run.log)"
fi
log "smoke: gopher-updater healthcheck (the image's HEALTHCHECK) sees the daemon"
HTTP_HOST=127.0.0.1 HTTP_PORT="$SMOKE_PORT" chroot --userspec=10001:10001 "$mnt" /usr/bin/env \
    PATH=/opt/venv/bin:/usr/bin:/bin gopher-updater healthcheck \
    || die "gopher-updater healthcheck failed against a healthy daemon"
log "smoke: SIGTERM must stop the daemon with status 0 within terminationGracePeriodSeconds (10 s)"
kill -TERM "$(cat "$pidfile")"
for _ in $(seq 1 20); do
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.5
done
kill -0 "$daemon_pid" 2>/dev/null && die "daemon still running 10 s after SIGTERM"
set +e
wait "$daemon_pid"
stop_rc=$?
set -e
daemon_pid=""
[[ $stop_rc == 0 ]] || die "daemon exited $stop_rc after SIGTERM, expected 0"
if grep -q 'Traceback' "$WORK_DIR/smoke-run.log"; then
    sed 's/^/    /' "$WORK_DIR/smoke-run.log" >&2
    die "daemon printed a traceback on a read-only root"
fi
log "smoke: OK — $IMAGE built FROM $BASE_IMAGE and verified"
