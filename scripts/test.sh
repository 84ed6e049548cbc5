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
    bash scripts/setup.sh nginx-light python3-aiosmtpd openssl prometheus prometheus-alertmanager mosquitto python3-paho-mqtt zookeeper python3-kazoo default-jre-headless chromium man-db debootstrap systemd-container lintian  # + boot the Debians, lint the package
else
    bash scripts/setup.sh nginx-light python3-aiosmtpd openssl prometheus prometheus-alertmanager mosquitto python3-paho-mqtt zookeeper python3-kazoo default-jre-headless chromium man-db  # test servers, a browser, man
fi
# paho-mqtt 2.x (Debian 13's python3-paho-mqtt 2.1) beside Debian 12's 1.6: the MQTT fleet test
# runs once more against it (tests/integration/test_fleet_mqtt.py::test_paho_2_api)
[ -d .venv-paho2/paho ] || .venv/bin/pip install -q --disable-pip-version-check --no-deps \
    --target .venv-paho2 paho-mqtt==2.1.0 </dev/null
.venv/bin/ruff check src tests bench
.venv/bin/mypy
if [ "$system" = yes ]; then
    .venv/bin/python -m pytest -m "not system or system" -p no:cacheprovider "${extra[@]}"
else
    .venv/bin/python -m pytest -p no:cacheprovider "${extra[@]}"
fi
