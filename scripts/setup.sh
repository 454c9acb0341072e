#!/usr/bin/env bash
# Idempotent setup: a venv in .venv with every pinned requirement, and (as root) the Debian
# packages the headless Kivy tests need. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

if [ -f .ci/apt-packages.txt ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  while read -r pkg; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done < .ci/apt-packages.txt
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned requirements into .venv (first time: a few minutes, ~7 GB)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt -c constraints.txt
  .venv/bin/python -m pip check
  echo "$want" > "$stamp"
fi
# python-for-android, only for rendering its AndroidManifest template in the tests (no SDK needed)
p4a_want=$(sha256sum requirements-android-build.txt | cut -d' ' -f1)
if [ "$(cat .venv/p4a/.requirements.sha256 2>/dev/null)" != "$p4a_want" ]; then
  echo "setup: installing python-for-android into .venv/p4a (requirements-android-build.txt)"
  rm -rf .venv/p4a.tmp .venv/p4a
  .venv/bin/python -m pip install -q --no-warn-conflicts --target .venv/p4a.tmp -r requirements-android-build.txt
  echo "$p4a_want" > .venv/p4a.tmp/.requirements.sha256
  mv .venv/p4a.tmp .venv/p4a
fi
