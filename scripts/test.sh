#!/usr/bin/env bash
# Sets up everything (Debian packages, .venv) and runs the test suite under Xvfb.
# Keras tests (tests/core, on TensorFlow and again on JAX) and napari/Qt tests run in separate
# pytest processes: loading TensorFlow next to napari's OpenGL crashes (see docs/architecture.md),
# and the GUI tests check that their process never loads it.
# Extra arguments replace the default selection, e.g. scripts/test.sh tests/io/test_tiff.py -x
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh testing || exit 1
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}" TF_CPP_MIN_LOG_LEVEL=2
run() { xvfb-run -a -s "-screen 0 1400x1000x24" .venv/bin/python -m pytest "$@"; }
if [ $# -gt 0 ]; then
  run "$@"
  exit $?
fi
reports=$(mktemp -d)
# Two things at a time, to use both cores of a small machine (the napari side alone keeps one busy):
# 1. the Keras tests beside the fault suite. They share nothing: tests/core starts no worker and
#    leaves /dev/shm alone, which the fault suite scans after every case. The model code is written
#    with keras.ops, so the core must pass on JAX too (CPU wheel); the modules marked
#    backend_independent never load Keras, so they run once.
keras_tests() {
  run tests/core --durations=15 --junitxml="$reports/core.xml"; echo $? > "$reports/core.rc"
  KERAS_BACKEND=jax run tests/core -m "not backend_independent" --durations=15 \
    --junitxml="$reports/core_jax.xml"; echo $? > "$reports/core_jax.rc"
}
keras_tests > "$reports/core.log" 2>&1 &
run tests/faults --durations=15 --junitxml="$reports/faults.xml"; faults=$?
# Then the docks' tests, in this lane too: the fault suite has ended, and the lanes come out even.
run tests/plugin/widgets --durations=15 --junitxml="$reports/widgets.xml"; widgets=$?
wait
cat "$reports/core.log"
core=$(cat "$reports/core.rc") core_jax=$(cat "$reports/core_jax.rc")
# 2. the rest of the napari side on two pytest-xdist workers, a test file to each.
run tests --ignore=tests/core --ignore=tests/faults --ignore=tests/plugin/widgets -n 2 --dist loadfile --durations=15 \
  --junitxml="$reports/gui.xml"; gui=$?
if .venv/bin/ruff check src tests benchmarks docs; then echo "lint: clean (ruff)"; lint=0; else echo "lint: ruff found problems"; lint=1; fi
# Types of io/ and core/ ([tool.mypy] in pyproject.toml).
if .venv/bin/mypy; then echo "types: clean (mypy)"; types=0; else echo "types: mypy found problems"; types=1; fi
# The documentation (mkdocs.yml, docs/): strict, so a broken link fails it.
site=$(mktemp -d)
if .venv/bin/mkdocs build --strict --site-dir "$site"; then
  echo "docs: built (strict)"; docs=0
else
  echo "docs: build failed (mkdocs build --strict)"; docs=1
fi
rm -rf "$site"
.venv/bin/python - "$reports"/*.xml <<'PY'
import sys, xml.etree.ElementTree as ET
totals = dict(tests=0, failures=0, errors=0, skipped=0)
for path in sys.argv[1:]:
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
failed = totals["failures"] + totals["errors"]
passed = totals["tests"] - failed - totals["skipped"]
print(f"\ntests: {passed} passed, {failed} failed, {totals['skipped']} skipped")
PY
rm -rf "$reports"
[ $core -eq 0 ] && [ $core_jax -eq 0 ] && [ $faults -eq 0 ] && [ $widgets -eq 0 ] && [ $gui -eq 0 ] && [ $lint -eq 0 ] && [ $types -eq 0 ] && [ $docs -eq 0 ]
