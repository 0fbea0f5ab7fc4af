#!/usr/bin/env bash
# Shared set-up for scripts/demo.sh and scripts/test.sh: Debian packages that headless
# napari needs (when root and missing), then a virtual environment in .venv with the plugin.
# Usage: scripts/setup.sh [pip extras, e.g. testing]
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
debs=(xvfb xauth libgl1 libgl1-mesa-dri libegl1 libglx-mesa0
      libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
      libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0
      libxcb-xkb1 libdbus-1-3 libfontconfig1)
# A python3 from elsewhere (pyenv, conda) with venv support is fine.
python3 -c "import venv, ensurepip" 2>/dev/null || debs+=(python3 python3-venv)
missing=()
for p in "${debs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "Missing system packages: ${missing[*]}. Install them (sudo apt-get install ...) and rerun." >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install -q -e ".[$extras]"
else
  .venv/bin/python -m pip install -q -e ".[all]"
fi
