#!/bin/bash
# Set up a fresh Debian 11/12 machine (as root) to run and test zelador from this checkout.
# Installs Debian's python3 and the runtime libraries as Debian packages (the same ones the .deb
# depends on), then a virtualenv in .venv with the package and its pinned dev tools, and puts
# `zelador` on PATH (/usr/local/bin/zelador -> .venv/bin/zelador) unless a zelador is there.
# Extra Debian packages to install can be named as arguments (the tests add some).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in python3 python3-venv python3-pip python3-psutil python3-yaml python3-systemd \
           python3-sdnotify python3-croniter python3-prometheus-client procps systemd "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]}" >&2
    apt-get update -qq </dev/null
    # A package whose service would start on install (nginx for the tests) must not: the tests
    # start their own. policy-rc.d says so to invoke-rc.d; ours only if none is there already.
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        guard=/usr/sbin/policy-rc.d
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need_apt[@]}" </dev/null >/dev/null
    [ -z "$guard" ] || rm -f "$guard"
fi

DEV_TOOLS=(pytest==9.2.0 ruff==0.17.6 mypy==2.4.1 types-PyYAML==6.0.12.20261113
           types-psutil==7.2.2.20261111)
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import zelador, pytest, mypy, ruff' 2>/dev/null; then
    echo "setup: creating .venv" >&2
    /usr/bin/python3 -m venv --system-site-packages .venv
    .venv/bin/pip install -q --disable-pip-version-check --no-deps -e . </dev/null
    .venv/bin/pip install -q --disable-pip-version-check "${DEV_TOOLS[@]}" </dev/null
fi
if { [ -L /usr/local/bin/zelador ] || [ ! -e /usr/local/bin/zelador ]; } && [ -w /usr/local/bin ]; then
    ln -sfn "$(pwd)/.venv/bin/zelador" /usr/local/bin/zelador
    echo "setup: zelador is on PATH (/usr/local/bin/zelador -> $(pwd)/.venv/bin/zelador)" >&2
fi
