"""Ctrl-C, SIGTERM and SIGHUP in the command line: a graceful stop, never a lost model.

While a job is being followed (``deferred``), a signal is only recorded; the loop that follows
the job asks the worker to stop, so training saves its best model and prediction ends cleanly.
Outside a job a signal interrupts at once (``Interrupted``), and the usual ``finally`` clauses
remove temporary files. Only a second Ctrl-C kills the worker: a closing terminal sends SIGHUP
more than once (to the process group, then again from the shell), and a service manager may
repeat SIGTERM, and neither means "give up the model".
"""

from __future__ import annotations

import contextlib
import os
import signal

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if hasattr(signal, "SIGHUP") else (
    signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The command was interrupted by ``signum``."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class _State:
    received: list[int] = []  # signals not yet taken by the job loop
    deferring = False
    last: int | None = None  # the last signal seen, for the exit status
    whole = False  # the output is written whole: later signals change nothing
    late: int | None = None  # the signal that came too late to stop the run (``output_whole``)
    terminal_fds: tuple[int, ...] = ()


def _handle(signum, _frame):
    if hasattr(signal, "SIGHUP") and signum == signal.SIGHUP:
        _detach_from_closed_terminal()
    if _State.whole:  # too late: said when the command reports the output (``output_whole``)
        _State.late = _State.late or signum
        return
    _State.last = signum
    if _State.deferring:
        _State.received.append(signum)
        return
    raise Interrupted(signum)


def _detach_from_closed_terminal() -> None:
    # After a hang-up, writing to the terminal fails (EIO) and would abort the graceful stop.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in _State.terminal_fds:
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


@contextlib.contextmanager
def handled(ignore_after: bool = False):
    """Handle Ctrl-C, SIGTERM and SIGHUP as described above while the block runs; afterwards each
    gets its handler from before, or is ignored (``ignore_after``: the command has ended)."""
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    _State.received, _State.deferring, _State.last, _State.whole, _State.late = [], False, None, False, None
    _State.terminal_fds = tuple(fd for fd in (1, 2) if _isatty(fd))
    for signum in HANDLED:
        signal.signal(signum, _handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_IGN if ignore_after else handler)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


@contextlib.contextmanager
def deferred():
    """Record signals instead of raising, for a loop that calls ``take`` and stops its job (nests)."""
    outer, _State.deferring = _State.deferring, True
    try:
        yield
    finally:
        _State.deferring = outer


def take() -> list[int]:
    """The signals received since the last call (while deferred)."""
    taken, _State.received = _State.received, []
    return taken


def again_hint(signum: int, what: str) -> str:
    """`` (Ctrl-C again to ...)`` after a first Ctrl-C; nothing after SIGTERM or SIGHUP, which
    only a second Ctrl-C (not a second SIGTERM) turns into ``what``."""
    return f" (Ctrl-C again {what})" if signum == signal.SIGINT else ""


def output_whole() -> int | None:
    """Say that the output is written whole: the command then ends as a success, whatever signal
    came too late to stop it, or comes now. Returns that late signal, if any (on every call)."""
    if not _State.whole:
        _State.late, _State.last, _State.whole = _State.last, None, True
    return _State.late


def last_signal() -> int | None:
    """The last signal received inside ``handled``, if any."""
    return _State.last


def exit_status(signum: int) -> int:
    """The shell's convention for a command ended by a signal."""
    return 128 + signum

