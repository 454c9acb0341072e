#!/usr/bin/env bash
# Start a local Flower federation (1 SuperLink + K SuperNodes on 127.0.0.1, TLS, SuperNode auth,
# no runtime dependency installation). Stop it with scripts/federation_down.sh WORKDIR.
#   scripts/federation_up.sh WORKDIR DATA_ROOT K [extra `python -m federation up` flags]
# DATA_ROOT holds hospital-0 .. hospital-<K-1> (python -m federation split-data). Certificates are
# made in WORKDIR/certs when missing (throw-away CA: tests and demos only).
set -euo pipefail
if [[ $# -lt 3 ]]; then
    echo "usage: $0 WORKDIR DATA_ROOT K [--port P] [--fast] [--poll-interval S] [--warm-worker] [--test-mode]" >&2
    exit 2
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
workdir="$1"; data_root="$2"; k="$3"; shift 3
python="${PYTHON:-$here/.venv/bin/python}"
mkdir -p "$workdir"
[[ -f "$workdir/certs/ca.crt" ]] || "$here/scripts/make_certs.sh" "$workdir/certs" "$k"
cd "$here"
exec "$python" -m federation up --workdir "$workdir" --certs "$workdir/certs" --data-root "$data_root" \
    --hospitals "$k" "$@"
