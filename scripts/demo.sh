#!/usr/bin/env bash
# Sets up everything (Debian packages, .venv) and runs the demo: train on the synthetic
# sample, segment the whole volume, write results to ./demo_output.
# Extra arguments go to `napari-unet demo`, e.g. scripts/demo.sh --image vol.tif --labels lab.tif
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh all
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/napari-unet demo "$@"
