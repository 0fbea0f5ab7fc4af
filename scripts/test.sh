#!/usr/bin/env bash
# Sets up everything (Debian packages, .venv) and runs the test suite under Xvfb.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh testing
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}" TF_CPP_MIN_LOG_LEVEL=2
exec xvfb-run -a -s "-screen 0 1400x1000x24" .venv/bin/python -m pytest "$@"
