# gopher-updater developer recipes. Everything runs from the project's own virtualenv (.venv),
# created on demand, so a fresh Debian machine needs only python3 + pip.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv"
bin := venv / "bin"

# list the recipes
default:
    @just --list

# create .venv and install the project with its dev extras (only when pyproject.toml changed)
setup:
    scripts/bootstrap.sh

# make sure Debian's docker-registry, skopeo and promtool are installed (integration and alert tests)
system-deps:
    scripts/system-deps.sh

# ruff (lint + format check), mypy --strict on the package, hadolint on the Containerfile
lint: setup
    {{bin}}/ruff check gopher_updater tests scripts
    {{bin}}/ruff format --check gopher_updater tests scripts
    {{bin}}/mypy --strict gopher_updater
    {{bin}}/hadolint containers/Containerfile

# run the whole test suite (unit, simulator and real-registry integration tests; skips fail the run)
# in 3 pytest-xdist workers: the suite mostly waits on sockets and clocks, not the CPU, so 3
# workers on 2 cores take ~1m45s instead of ~4m45s (pass `-n 0` to run it in one process)
test *args: setup system-deps
    GOPHER_UPDATER_NO_SKIP=1 {{bin}}/pytest -n 3 {{args}}

# the fuzzers (config loader, chain decoders, registry parsers/client, notify/flux parsers) with
# many more examples, in 2 xdist workers (they are CPU-bound): 10,000 per fuzz test took 6 min 11 s
# on a 2-core machine, ~10 min of CPU (the registry client fuzzer alone ~2 min); raise `examples`
# for longer: `just fuzz 20000`
fuzz examples="10000": setup system-deps
    HYPOTHESIS_PROFILE=fuzz GOPHER_UPDATER_FUZZ_EXAMPLES={{examples}} GOPHER_UPDATER_NO_SKIP=1 {{bin}}/pytest -q -n 2 -m fuzz -o timeout=3600 --durations=20

# run the daemon with the configuration in the environment
run: setup
    {{bin}}/gopher-updater run

# one-shot preflight against the configured chain and registry
check: setup
    {{bin}}/gopher-updater check

# the whole job locally: chain simulator, real registry, daemon; promotion in under a minute
demo: setup system-deps
    {{bin}}/gopher-updater demo

# measure latency, requests/bytes per poll, RSS, readiness time, probe latency
bench: setup system-deps
    {{bin}}/python scripts/bench.py

# build the container image without a Docker daemon (buildah; bootstraps a Debian base if needed)
image:
    scripts/build-image.sh

# Python >= 3.13 resolves quart 0.23 / quart-trio 0.13 (3.11/3.12 get 0.22 / 0.12).
# ops-app and end-to-end daemon tests on the quart 0.23 line (needs Python >= 3.13)
test-quart-line python="python3.13": system-deps
    {{python}} -m venv .venv-quart-line
    .venv-quart-line/bin/python -m pip install --quiet -e '.[dev]'
    .venv-quart-line/bin/python -c 'import importlib.metadata as m; print("quart", m.version("quart"), "quart-trio", m.version("quart-trio"))'
    GOPHER_UPDATER_NO_SKIP=1 .venv-quart-line/bin/pytest -q -n 3 tests/test_ops.py tests/test_daemon.py
