#!/usr/bin/env bash
# The integration tests run a real distribution registry (Debian's docker-registry) and use
# skopeo as an independent digest check; the alert tests run promtool (Debian's prometheus
# package). Install them when we can; otherwise fail loudly: a run without them would not be
# a real test run.
set -euo pipefail
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
    exit 0
fi
echo "error: the integration tests need: ${missing[*]}" >&2
echo "       install them with: sudo apt-get install -y ${missing[*]}" >&2
exit 1
