#!/usr/bin/env bash
# Stop every process scripts/federation_up.sh started (PIDs recorded in WORKDIR/pids.json; a PID
# whose process start time changed is left alone).
set -euo pipefail
if [[ $# -ne 1 ]]; then echo "usage: $0 WORKDIR" >&2; exit 2; fi
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
exec "${PYTHON:-$here/.venv/bin/python}" -m federation down --workdir "$1"
