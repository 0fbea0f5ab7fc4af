"""Plain ``pytest`` runs the whole suite, in two processes.

``tests/core`` imports Keras and TensorFlow; the other tests drive napari and check that its
process never loads them (TensorFlow next to napari's OpenGL crashes, see
docs/architecture.md). So when one run would collect both, this process leaves ``tests/core`` out and
runs it at the end in a child pytest with the same options; its failures fail this run.
``scripts/test.sh`` runs the two halves itself, so there is no child there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent / "core"
# The small worker jobs of tests/runtime/engine_jobs.py, importable by name in spawned workers
# (which inherit this sys.path) from the CLI and fault tests too.
sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))
# tests/volumes.py (disc_volume, the tiny test volume), importable from every test folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _path_args(config) -> list[Path]:
    return [Path(str(arg).split("::")[0]).resolve() for arg in config.args]


def _ignored(config) -> list[Path]:
    return [Path(p).resolve() for p in (config.getoption("ignore") or [])]


def _mixed(config) -> bool:
    """True when the run covers tests/core and other tests too (e.g. ``pytest`` or ``pytest tests``)."""
    if any(_inside(CORE, p) for p in _ignored(config)):  # scripts/test.sh's second half
        return False
    paths = _path_args(config)
    covers_core = any(_inside(CORE, p) or _inside(p, CORE) for p in paths)
    covers_other = any(not _inside(p, CORE) for p in paths)
    return covers_core and covers_other


def pytest_configure(config):
    config._core_in_child = _mixed(config)


def pytest_ignore_collect(collection_path, config):
    if getattr(config, "_core_in_child", False) and _inside(Path(collection_path).resolve(), CORE):
        return True
    return None


def _child_args(config) -> list[str]:
    """This run's options, with the paths it named inside tests/core (else tests/core)."""
    paths = {str(arg) for arg in config.args}
    options, skip_next = [], False
    for arg in map(str, config.invocation_params.args):
        # A report file named in this run would be overwritten by the child's: the child writes none.
        if arg in ("--junitxml", "--junit-xml"):
            skip_next = True
        elif not (skip_next or arg in paths or arg.startswith(("--junitxml=", "--junit-xml="))):
            options.append(arg)
        else:
            skip_next = False
    core_paths = [str(arg) for arg in config.args if _inside(Path(str(arg).split("::")[0]).resolve(), CORE)]
    return [sys.executable, "-m", "pytest", *options, *(core_paths or [str(CORE)])]


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if not getattr(config, "_core_in_child", False):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "tests/core in its own process (it loads TensorFlow)")
    result = subprocess.run(_child_args(config), cwd=config.invocation_params.dir)
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
