#!/usr/bin/env bash
# Creates or refreshes the project's virtualenv (.venv by default, or $GALAXY_CLOUD_VENV) with
# Galaxy 26.1, the plugin (editable) and the test tools, pinned by constraints/galaxy-26.1.txt.
# Re-running is cheap: nothing is installed while setup.cfg and the constraints are unchanged.
# Sourced by scripts/demo and scripts/test; prints nothing but progress on stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GALAXY_CLOUD_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.galaxy-cloud-storage-installed"
WANTED="$(cat "$ROOT/setup.cfg" "$ROOT/constraints/galaxy-26.1.txt" | sha256sum | cut -d' ' -f1)"

if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANTED" ]; then
    echo "Installing Galaxy 26.1, the plugin and its test tools into $VENV (a few minutes the first time)" >&2
    started=$SECONDS
    "$VENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
    "$VENV/bin/python" -m pip install --quiet -c "$ROOT/constraints/galaxy-26.1.txt" -e "$ROOT[galaxy,test]" \
        2>&1 | grep -v '^WARNING: Location' >&2 || true
    "$VENV/bin/python" -c "import galaxy.webapps.galaxy.fast_factory, galaxy_cloud_storage.mount, moto" >/dev/null 2>&1 || {
        echo "The install into $VENV failed; see the messages above." >&2
        exit 1
    }
    echo "$WANTED" > "$STAMP"
    echo "Installed in $((SECONDS - started)) s" >&2
fi
export PATH="$VENV/bin:$PATH"
