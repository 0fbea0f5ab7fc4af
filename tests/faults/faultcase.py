"""A fault case: one ``napari-unet`` command on tiny files, maybe a signal, then the checks.

Every case, whatever it expects, must leave things clean:

- the exit status is the expected one (any non-zero one for ``rc=None`` failures);
- stderr holds exactly the one expected message line (none for a success), never a traceback;
- every file that existed before is byte-identical afterwards, unless the case changes it;
- no new ``napari_unet_*`` or ``sem.mp-*`` entry is left in /dev/shm;
- no temporary folder or file is left (``.saving-*``, ``.old-*``, ``*.partial.zarr``, ``*.part``).
"""

from __future__ import annotations

import hashlib
import os
import pty
import queue
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

GUARD_S = 300  # only ends a hung case; no case waits for time to pass
SHM = Path("/dev/shm")
PROGRESS = re.compile(r"^\s*(Training|Segmenting|Working|Blocks):")  # tqdm's bar, not a message
TEMPORARY = re.compile(r"(\.saving-|\.old-|\.partial\.zarr$|\.part$)")


@dataclass
class Case:
    """``argv`` may use {image}, {labels}, {truth}, {model} and {dir} (the case's folder)."""

    name: str
    argv: list[str]
    rc: int | None = None  # None: any non-zero status
    message: str | None = None  # regex for the one stderr line; None: no message at all
    signal: int | None = None
    after: str | None = None  # regex on stdout/stderr lines: send the signal when it appears
    again: str | None = None  # regex: send the signal a second time when this appears (after ``after``)
    to_group: bool = True  # to the process group (as a terminal does), or to the process alone
    terminal: bool = False  # run on a pseudo-terminal and close it at ``after`` (the signal: SIGHUP)
    setup: object = None  # callable(case_dir) run before the command
    teardown: object = None  # callable(case_dir) run afterwards, whatever happened
    env: dict = field(default_factory=dict)  # more environment; values may use {dir}
    changes: tuple[str, ...] = ()  # files (relative) the case may change
    expect: tuple[str, ...] = ()  # files (relative) that must exist afterwards
    partial: bool = False  # a *.partial.zarr may stay
    any_stderr: bool = False  # a killed parent cannot speak: stderr is not checked
    semaphores_may_leak: str = ""  # why a case cannot free multiprocessing's semaphores
    then: Case | None = None  # a second command in the same folder (e.g. the next run)
    noise: str | None = None  # regex: stderr lines that are not messages (e.g. -X importtime's)
    absent: tuple[str, ...] = ()  # globs (relative) that must match nothing afterwards
    launcher: tuple[str, ...] = ("-m", "napari_unet.cli.main")  # what runs the command: python's arguments


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    problems: list[str] = field(default_factory=list)


def digest_tree(folder: Path) -> dict[str, str]:
    """A hash of every file but temporaries (a case may plant those, to be tidied)."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*"))
            if path.is_file() and not any(TEMPORARY.search(part) for part in path.relative_to(folder).parts)}


def shm_entries() -> set[str]:
    if not SHM.is_dir():
        return set()
    return {name for name in os.listdir(SHM) if name.startswith(("napari_unet_", "sem.mp-"))}


def _mapped_anywhere(names: set[str]) -> set[str]:
    """Those of ``names`` some live process still maps (another program's, in use)."""
    mapped = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            maps = (proc / "maps").read_text()
        except OSError:
            continue
        mapped |= {name for name in names if f"/dev/shm/{name}" in maps}
    return mapped


def new_shm_leaks(before: set[str]) -> set[str]:
    new = shm_entries() - before
    # Other programs on this machine may use semaphores meanwhile; ours, once leaked, are
    # mapped by no process.
    return new - _mapped_anywhere(new)


def _pump(stream, name, lines: queue.Queue, store: list):
    for chunk in iter(lambda: stream.readline(), ""):
        store.append(chunk)
        for line in re.split(r"[\r\n]", chunk):
            lines.put((name, line))
    lines.put((name, None))


def _wait_for(lines: queue.Queue, pattern: str, open_streams: int) -> int:
    """Block until a line matches ``pattern``; returns how many streams are still open."""
    while open_streams:
        name, line = lines.get(timeout=GUARD_S)
        if line is None:
            open_streams -= 1
        elif re.search(pattern, line):
            return open_streams
    raise AssertionError(f"the output never showed {pattern!r}")


def run_command(argv: list[str], case: Case, env: dict, cwd: Path) -> Outcome:
    command = [sys.executable, *case.launcher, *argv]
    if case.terminal:
        return _run_on_terminal(command, case, env, cwd)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd, start_new_session=True)
    lines, out, err = queue.Queue(), [], []
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, "out", lines, out), daemon=True),
             threading.Thread(target=_pump, args=(proc.stderr, "err", lines, err), daemon=True)]
    for pump in pumps:
        pump.start()
    try:
        if case.signal is not None:
            open_streams = _wait_for(lines, case.after, 2)
            (os.killpg if case.to_group else os.kill)(proc.pid, case.signal)
            if case.again is not None:
                _wait_for(lines, case.again, open_streams)
                (os.killpg if case.to_group else os.kill)(proc.pid, case.signal)
        for pump in pumps:  # end of output: the command, its worker and helpers have all ended
            pump.join(GUARD_S)
        rc = proc.wait(GUARD_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return Outcome(rc, "".join(out), "".join(err))


def _run_on_terminal(command, case: Case, env: dict, cwd: Path) -> Outcome:
    """Run on a pseudo-terminal that becomes the command's controlling terminal, then hang it up."""
    import fcntl
    import termios

    master, slave = pty.openpty()

    def take_terminal():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                            start_new_session=True, preexec_fn=take_terminal)
    os.close(slave)
    seen = ""
    try:
        while not re.search(case.after, seen, re.M):
            chunk = os.read(master, 4096)
            if not chunk:
                raise AssertionError(f"the terminal never showed {case.after!r}")
            seen += chunk.decode(errors="replace").replace("\r", "\n")
        os.close(master)  # the terminal closes: the kernel sends SIGHUP
        master = None
        rc = proc.wait(GUARD_S)
    finally:
        if master is not None:
            os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return Outcome(rc, seen, "")


def message_lines(stderr: str, noise: str | None = None) -> list[str]:
    return [line for line in re.split(r"[\r\n]", stderr)
            if line.strip() and not PROGRESS.match(line) and not (noise and re.search(noise, line))]


def check(case: Case, outcome: Outcome, before: dict[str, str], after: dict[str, str],
          leaks: set[str], folder: Path) -> list[str]:
    problems = []
    if case.rc is None and outcome.rc == 0:
        problems.append("exit status 0 for a failure")
    elif case.rc is not None and outcome.rc != case.rc:
        problems.append(f"exit status {outcome.rc}, expected {case.rc}")
    if not case.any_stderr:
        problems += _stderr_problems(case, outcome.stderr)
    for path, digest in before.items():
        if path not in case.changes and after.get(path) != digest:
            problems.append(f"{path} was {'changed' if path in after else 'removed'}")
    for path in case.expect:
        if not (folder / path).exists():
            problems.append(f"{path} is missing")
    for pattern in case.absent:
        problems += [f"{path.relative_to(folder)} left behind" for path in folder.glob(pattern)]
    if case.semaphores_may_leak:
        leaks = {name for name in leaks if not name.startswith("sem.mp-")}
    if leaks:
        problems.append(f"left in /dev/shm: {sorted(leaks)}")
    for path in folder.rglob("*"):
        if TEMPORARY.search(path.name) and not (case.partial and path.name.endswith(".partial.zarr")):
            problems.append(f"temporary {path.relative_to(folder)} left behind")
    return problems


def _stderr_problems(case: Case, stderr: str) -> list[str]:
    if "Traceback" in stderr:
        return ["a traceback on stderr"]
    lines = message_lines(stderr, case.noise)
    if case.message is None:
        return [f"unexpected stderr: {lines}"] if lines else []
    if len(lines) != 1:
        return [f"{len(lines)} stderr lines instead of one: {lines}"]
    if not re.search(case.message, lines[0]):
        return [f"stderr {lines[0]!r} does not match {case.message!r}"]
    return []
