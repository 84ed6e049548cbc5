#!/bin/bash
# Set up (see setup.sh) and run every check: ruff, mypy --strict, unit and integration tests,
# and, with --system, the system tests in a booted Debian (systemd-nspawn, the .deb installed).
set -euo pipefail
cd "$(dirname "$0")/.."
extra=()
system=no
for arg in "$@"; do
    case "$arg" in
        --system) system=yes ;;
        *) extra+=("$arg") ;;
    esac
done
if [ "$system" = yes ]; then
    bash scripts/setup.sh nginx-light python3-aiosmtpd openssl prometheus zookeeper python3-kazoo default-jre-headless chromium man-db debootstrap systemd-container lintian  # + boot the Debians, lint the package
else
    bash scripts/setup.sh nginx-light python3-aiosmtpd openssl prometheus zookeeper python3-kazoo default-jre-headless chromium man-db  # test servers, a browser, man
fi
.venv/bin/ruff check src tests bench
.venv/bin/mypy
if [ "$system" = yes ]; then
    .venv/bin/python -m pytest -m "not system or system" -p no:cacheprovider "${extra[@]}"
else
    .venv/bin/python -m pytest -p no:cacheprovider "${extra[@]}"
fi
