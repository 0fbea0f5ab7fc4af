"""The fault suite's files, tiny model, runner and tally (see faultcase.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
import tifffile

import faultcase
from volumes import ONE_DISC, disc_volume

# A shell starts a background job (`scripts/test.sh &`) with SIGINT ignored, and the cases' commands
# would inherit that: their Ctrl-C would never arrive. Default here means default there.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TALLY = {"cases": 0, "clean": 0, "not clean": []}
TINY = ["--n-filters", "4", "--depth", "2", "--batch-size", "2", "--patch-size", "32",
        "--steps-per-epoch", "3"]


def pytest_terminal_summary(terminalreporter):
    if TALLY["cases"]:
        names = TALLY["not clean"]
        terminalreporter.write_line(
            f"faults: {TALLY['cases']} cases, {TALLY['clean']} clean, {len(names)} not clean"
            + (f" ({', '.join(names)})" if names else ""))


def _environment(log_dir) -> dict:
    env = dict(os.environ, NAPARI_UNET_LOG_DIR=str(log_dir), TF_CPP_MIN_LOG_LEVEL="3",
               TQDM_MININTERVAL="0")  # every slice shows, so a case can wait for the first
    src = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.abspath(src), env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="session")
def fault_files(tmp_path_factory):
    """Tiny inputs and a tiny trained model, made once."""
    folder = tmp_path_factory.mktemp("fault_inputs")
    image, labels, truth = disc_volume((24, 48, 48), annotated=(0, 12, 23), discs=ONE_DISC)
    tifffile.imwrite(folder / "vol.tif", image, photometric="minisblack")
    tifffile.imwrite(folder / "vol_labels.tif", labels, photometric="minisblack")
    tifffile.imwrite(folder / "truth_labels.tif", truth, photometric="minisblack")
    env = _environment(folder / "logs")
    result = subprocess.run(
        [sys.executable, "-m", "napari_unet.cli.main", "train", "--image", str(folder / "vol.tif"),
         "--labels", str(folder / "vol_labels.tif"), "--out", str(folder / "model"), *TINY, "--epochs", "1"],
        capture_output=True, text=True, env=env, timeout=faultcase.GUARD_S)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def run_case(fault_files, tmp_path):
    """Run a case (and its follow-up) in a fresh folder; fail the test with every problem found."""

    def run(case: faultcase.Case) -> list[faultcase.Outcome]:
        folder = tmp_path / "case"
        folder.mkdir()
        for name in ("vol.tif", "vol_labels.tif", "truth_labels.tif", "model"):
            copy = shutil.copytree if (fault_files / name).is_dir() else shutil.copy
            copy(fault_files / name, folder / name)
        shm_before = faultcase.shm_entries()
        outcomes, problems, step = [], [], case
        while step is not None:
            try:
                outcomes.append(_run_step(step, folder, tmp_path, shm_before))
            finally:
                if step.teardown is not None:
                    step.teardown(folder)
            problems += [f"{step.name}: {problem}" for problem in outcomes[-1].problems]
            step = step.then
        TALLY["cases"] += 1
        if problems:
            TALLY["not clean"].append(case.name)
        else:
            TALLY["clean"] += 1
        last = outcomes[-1]
        assert not problems, "\n".join(["--- stdout:", last.stdout[-2000:], "--- stderr (no progress bars):",
                                         *faultcase.message_lines(last.stderr)[-20:], "--- problems:", *problems])
        return outcomes

    return run


def _run_step(step: faultcase.Case, folder, tmp_path, shm_before) -> faultcase.Outcome:
    if step.setup is not None:
        step.setup(folder)
    before = faultcase.digest_tree(folder)
    places = dict(image=folder / "vol.tif", labels=folder / "vol_labels.tif",
                  truth=folder / "truth_labels.tif", model=folder / "model", dir=folder)
    env = {**_environment(tmp_path / "logs"), **{k: v.format(**places) for k, v in step.env.items()}}
    outcome = faultcase.run_command([arg.format(**places) for arg in step.argv], step, env, folder)
    leaks = faultcase.new_shm_leaks(shm_before) if step.then is None else set()
    outcome.problems = faultcase.check(step, outcome, before, faultcase.digest_tree(folder), leaks, folder)
    return outcome
