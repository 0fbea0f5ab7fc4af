#!/usr/bin/env bash
# What users install is the wheel, so CI checks the wheel, not the editable tree: builds the sdist
# and the wheel (the wheel from the sdist, as `python -m build` does) from a clean copy of the
# tree, checks that the wheel holds every file of src/napari_unet, installs the wheel with the
# [all] extra into a fresh venv, and there runs pip check, npe2 validate (importing every command),
# napari-unet --help, a few-seconds train on the plugin's sample data (through npe2, as File >
# Open Sample does), export + `bioimageio test` of the package, and predict (from the package, and
# on a dask.distributed worker from the model folder). Ends with one `wheel check:` line; exits
# non-zero when any step fails (its output is printed then).
# Usage: scripts/check_wheel.sh   (WHEELCHECK_VENV, default /tmp/wheelcheck-venv, is recreated)
set -uo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
repo=$PWD
venv="${WHEELCHECK_VENV:-/tmp/wheelcheck-venv}"
extras=all
started=$SECONDS

# The dev venv builds (build comes with the testing extra); set it up only when it cannot.
if ! .venv/bin/python -m build --version >/dev/null 2>&1; then
  scripts/setup.sh testing || { echo "wheel check: failed (scripts/setup.sh testing)"; exit 1; }
fi

work=$(mktemp -d /tmp/wheelcheck.XXXXXX)
log="$work/log.txt"
done_steps=()
fail() {  # fail STEP: show what the step printed, the summary line, and stop
  echo "--- output of '$1' (last 60 lines; all of it in $log) ---"
  tail -n 60 "$log"
  local passed
  passed=$(IFS=';'; echo "${done_steps[*]:-nothing}")
  echo "wheel check: FAILED at $1 (passed: ${passed//;/, }; $((SECONDS - started)) s; files in $work)"
  exit 1
}
step() {  # step NAME TIMEOUT COMMAND...: run quietly into the log, fail on a non-zero exit
  local name=$1 limit=$2 t0=$SECONDS
  shift 2
  echo "=== $name: $*" >>"$log"
  if [ "$(type -t "$1")" = function ]; then
    "$@" >>"$log" 2>&1 || fail "$name"
  else
    timeout "$limit" "$@" >>"$log" 2>&1 || fail "$name"
  fi
  echo "[wheel check] $name: ok ($((SECONDS - t0)) s)"
}

# -- build -----------------------------------------------------------------------------------
# From a copy of what a fresh checkout holds (git's tracked and untracked, not ignored, files):
# setuptools reads a stale src/*.egg-info/SOURCES.txt into the sdist, which hides lost data files.
tree="$work/tree"
copy_tree() {
  mkdir -p "$tree"
  if git rev-parse --git-dir >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard
  else
    find . \( -name .git -o -name .venv -o -name build -o -name dist -o -name '*.egg-info' -o -name __pycache__ \) \
      -prune -o -type f -print0
  fi | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$tree"
  [ -f "$tree/pyproject.toml" ]
}
step "copy of the tree" 120 copy_tree
step build 300 .venv/bin/python -m build --outdir "$work/dist" "$tree"
wheels=("$work"/dist/*.whl)
[ ${#wheels[@]} -eq 1 ] && [ -f "${wheels[0]}" ] || { echo "expected one wheel, got: ${wheels[*]}" >>"$log"; fail build; }
wheel=${wheels[0]}
done_steps+=("build")

# Every file of the import package (napari.yaml and any other data) must be in the wheel.
contents() {
  echo "files under src/napari_unet missing from $(basename "$wheel"):"
  comm -23 <(cd "$tree/src" && find napari_unet -type f ! -path '*/__pycache__/*' ! -name '*.py[co]' | sort) \
    <(.venv/bin/python -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$wheel" | sort -u) \
    | tee "$work/missing.txt"
  [ ! -s "$work/missing.txt" ]
}
step "wheel contents" 60 contents
done_steps+=("wheel contents")

# -- a fresh venv with the wheel and its extra ----------------------------------------------
if [ -e "$venv" ]; then  # the last run's venv goes away in the background (3 GB: TensorFlow)
  old="$venv.old.$$"
  mv "$venv" "$old" || fail "moving the old $venv away"
  (rm -rf "$old" >/dev/null 2>&1 &)
fi
step venv 120 python3 -m venv "$venv"
py="$venv/bin/python"
# --no-compile: the steps below compile the modules they import; pip would compile all of TensorFlow.
step "pip install [$extras]" 1200 "$py" -m pip install --disable-pip-version-check -q --no-compile "$wheel[$extras]"
step "pip check" 60 "$py" -m pip check
done_steps+=("pip install [$extras] + pip check")

# Everything below runs outside the source tree, so nothing is imported from src/.
cd "$work" || fail "cd $work"
export TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow MPLBACKEND=Agg NAPARI_UNET_LOG_DIR="$work/logs"
step "npe2 validate" 120 "$venv/bin/npe2" validate napari-slice-unet --imports
done_steps+=("npe2 validate")
step "--help" 60 "$venv/bin/napari-unet" --help
done_steps+=("--help")

# The sample data through npe2 (its manifest entry), written as TIFFs to train on.
cat >"$work/sample.py" <<'PY'
import numpy as np
import tifffile
from npe2 import PluginManager

pm = PluginManager.instance()
pm.discover()
samples = {s.key: s for s in pm.get_manifest("napari-slice-unet").contributions.sample_data}
(image, _, _), (labels, _, _) = samples["synthetic_cells"].open()
assert image.ndim == 3 and labels.shape == image.shape and np.any(labels), (image.shape, labels.shape)
tifffile.imwrite("image.tif", image)
tifffile.imwrite("labels.tif", labels)
tifffile.imwrite("small.tif", image[:8])  # 8 slices: not taken for channels
print("sample data:", sorted(samples), image.shape, image.dtype)
PY
step "sample data" 120 "$py" "$work/sample.py"
step train 300 "$venv/bin/napari-unet" train --image image.tif --labels labels.tif --out model \
  --epochs 2 --steps-per-epoch 2 --patch-size 64 --batch-size 4 --n-filters 4 --depth 2 --max-seconds 30 --seed 0
done_steps+=("train")
step export 300 "$venv/bin/napari-unet" export --model model --image image.tif --out model.zip
step "bioimageio test" 300 "$venv/bin/bioimageio" test model.zip
done_steps+=("export + bioimageio test")
step "predict (package)" 300 "$venv/bin/napari-unet" predict --model model.zip --image small.tif --out masks.tif
step "predict (1 worker)" 300 "$venv/bin/napari-unet" predict --model model --image small.tif --out masks_workers.tif --workers 1
"$py" - >>"$log" 2>&1 <<'PY' || fail "predict outputs"
import numpy as np, tifffile
a, b = tifffile.imread("masks.tif"), tifffile.imread("masks_workers.tif")
assert a.shape == b.shape == (8, 256, 256), (a.shape, b.shape)
print("masks:", a.shape, a.dtype, "labels", np.unique(a)[:8])
PY
done_steps+=("predict")

cd "$repo" && rm -rf "$work"
summary=$(IFS=';'; echo "${done_steps[*]}")
echo "wheel check: passed (${summary//;/, }) in $((SECONDS - started)) s"
