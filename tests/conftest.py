"""Fixtures shared by the CLI, engine and dock tests."""

import os
from pathlib import Path

import pytest


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
