#!/usr/bin/env bash
# Create .venv and install the project with dev extras; re-install only when pyproject changed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv || {
        echo "error: 'python3 -m venv' failed; on Debian install python3-venv" >&2
        exit 1
    }
fi
stamp=.venv/.gopher-updater-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    touch "$stamp"
fi
