"""Plain ``pytest`` runs the whole suite, in two processes.

``tests/core`` imports Keras and TensorFlow; the other tests drive napari and check that its
process never loads them (TensorFlow next to napari's OpenGL crashes, see
docs/architecture.md). So when one run would collect both, this process leaves ``tests/core`` out and
runs a child pytest with the very same arguments, told by ``NAPARI_UNET_TESTS=core`` to collect only
``tests/core``; its failures fail this run. ``scripts/test.sh`` runs the two halves itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent / "core"
CORE_ONLY = "NAPARI_UNET_TESTS"  # set to "core" in the child
# The small worker jobs of tests/runtime/engine_jobs.py, importable by name in spawned workers
# (which inherit this sys.path) from the CLI and fault tests too.
sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))
# tests/volumes.py (disc_volume, the tiny test volume), importable from every test folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _mixed(config) -> bool:
    """True when the run covers tests/core and other tests too (e.g. ``pytest`` or ``pytest tests``)."""
    if os.environ.get(CORE_ONLY) == "core":
        return False
    if any(_inside(CORE, Path(p).resolve()) for p in (config.getoption("ignore") or [])):
        return False  # scripts/test.sh's napari half
    paths = [Path(str(arg).split("::")[0]).resolve() for arg in config.args]
    covers_core = any(_inside(CORE, p) or _inside(p, CORE) for p in paths)
    return covers_core and any(not _inside(p, CORE) for p in paths)


@pytest.hookimpl(tryfirst=True)  # before junitxml opens its report file
def pytest_configure(config):
    config._core_in_child = _mixed(config)
    child = os.environ.get(CORE_ONLY) == "core"
    if child:
        config.option.xmlpath = None  # the parent's report file: the child writes none
    if child or config._core_in_child:  # each process keeps its own half of the paths it was given
        keep = (lambda p: _inside(p, CORE) or _inside(CORE, p)) if child else (lambda p: not _inside(p, CORE))
        config.args[:] = [a for a in config.args if keep(Path(str(a).split("::")[0]).resolve())]


def pytest_ignore_collect(collection_path, config):
    path = Path(collection_path).resolve()
    if os.environ.get(CORE_ONLY) == "core":  # the child: tests/core and the folders above it only
        return None if _inside(path, CORE) or _inside(CORE, path) else True
    if config._core_in_child and _inside(path, CORE):
        return True
    return None


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if not config._core_in_child:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "tests/core in its own process (it loads TensorFlow)")
    child = [sys.executable, "-m", "pytest", *config.invocation_params.args]
    result = subprocess.run(child, cwd=config.invocation_params.dir, env={**os.environ, CORE_ONLY: "core"})
    if result.returncode not in (0, 5) and session.exitstatus == 0:  # 5: nothing collected
        session.exitstatus = result.returncode


@pytest.fixture
def read_only_folder(tmp_path, monkeypatch):
    """A folder nobody may write to: chmod where that binds (not for root), else os.access says so."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: let os.access answer as for a read-only mount
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
            not (mode & os.W_OK and Path(p) == folder) and real(p, mode, **kw)))
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)
