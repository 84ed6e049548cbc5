#!/bin/bash
# Set up (see setup.sh) and run zelador in the foreground on a stand-in SEFAZ-CE MFE.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/zelador demo "$@"
