#!/bin/bash
# Build dist/zelador_<version>_all.deb on Debian 11/12 (as root: installs its build deps).
set -euo pipefail
cd "$(dirname "$0")/.."
deps=(debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools dpkg-dev)
missing=()
for pkg in "${deps[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files -z 2>/dev/null | xargs -0 -I{} cp --parents -P {} "$work/" 2>/dev/null || cp -a . "$work/"
# Debian's python first: a pyenv or venv python breaks pybuild.
(cd "$work" && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b >"$work.log" 2>&1) || {
    tail -40 "$work.log" >&2; exit 1; }
mkdir -p dist
mv "$work"/../zelador_*_all.deb dist/
rm -f "$work"/../zelador_*.buildinfo "$work"/../zelador_*.changes "$work.log"
ls dist/zelador_*_all.deb
