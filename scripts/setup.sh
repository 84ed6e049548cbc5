#!/bin/bash
# Set up a fresh Debian 11/12 machine (as root) to run and test zelador from this checkout.
# Installs Debian's python3 and the runtime libraries as Debian packages (the same ones the .deb
# depends on), then a virtualenv in .venv with the package and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in python3 python3-venv python3-pip python3-psutil python3-yaml python3-systemd \
           python3-sdnotify procps systemd "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import zelador, pytest, mypy, ruff' 2>/dev/null; then
    echo "setup: creating .venv" >&2
    /usr/bin/python3 -m venv --system-site-packages .venv
    .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
    .venv/bin/pip install -q --disable-pip-version-check \
        pytest ruff mypy types-PyYAML types-psutil
fi
