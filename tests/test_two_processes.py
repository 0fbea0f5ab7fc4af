"""A run that names tests/core and other tests gives each half its own pytest process (conftest.py)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_mixed_run_runs_tests_core_in_a_child_with_the_same_options(tmp_path):
    report = tmp_path / "report.xml"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "ignore", f"--junitxml={report}",
         "tests/test_layout.py::test_the_cycle_finder_finds_a_planted_cycle",
         "tests/core/test_metrics.py", "-k", "planted_cycle or dice_iou_accuracy_by_hand"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:]
    parent, _, child = run.stdout.partition("tests/core in its own process")
    assert child, run.stdout[-2000:]
    assert "tests/test_layout.py ." in parent and "test_metrics" not in parent, run.stdout[-2000:]
    assert "tests/core/test_metrics.py ." in child and "test_layout" not in child, run.stdout[-2000:]
    assert 'tests="1"' in report.read_text()  # the parent's report, not overwritten by the child
