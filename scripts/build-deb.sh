#!/bin/bash
# Build dist/zelador_<version>_all.deb and its source package (.dsc, .tar.xz, .changes: what
# lintian checks) on Debian 11/12 (as root: installs its build deps) and print the .deb's path. `--version V` stamps another version on the build (the system tests use it to
# upgrade a terminal from the current version to a later one).
set -euo pipefail
cd "$(dirname "$0")/.."
version=""
if [ "${1:-}" = "--version" ]; then version=$2; fi
deps=(debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools dpkg-dev)
missing=()
for pkg in "${deps[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
top=$(mktemp -d)  # dpkg-buildpackage writes the .deb next to the source folder: keep that ours
trap 'rm -rf "$top"' EXIT
work="$top/zelador"
mkdir "$work"
git ls-files -z 2>/dev/null | xargs -0 -I{} cp --parents -P {} "$work/" 2>/dev/null || cp -a . "$work/"
if [ -n "$version" ]; then
    sed -i "1s/([^)]*)/($version)/" "$work/debian/changelog"
fi
# Debian's python first: a pyenv or venv python breaks pybuild.
(cd "$work" && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc >"$top/build.log" 2>&1) || {
    tail -40 "$top/build.log" >&2; exit 1; }
mkdir -p dist
built=$(cd "$top" && ls zelador_*_all.deb)
mv "$top"/zelador_* dist/
echo "dist/$built"
