"""Stopping a cluster run on Ctrl-C, SIGTERM or SIGHUP (``runtime.cluster``): no block starts
after the first signal, the running ones finish whole, and classes and probabilities keep the
finished blocks' parts; a second Ctrl-C stops at once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from napari_unet.io import omezarr
from napari_unet.runtime import interrupts

POLL_S = 0.1  # while blocks run, signals are answered within this
STOP_FILE = "_stop"  # in the output's temporary folder once a signal stopped the run: no block starts any more


class StopOnSignal:
    """Asked while the blocks run, signals deferred (``runtime.interrupts``): the first signal
    creates ``stop_file``, after which no block starts (``cluster_tasks.run_block_unless_stopped``)
    while the running ones finish, whole; a second Ctrl-C raises ``Interrupted`` at once."""

    def __init__(self, stop_file, on_message):
        self.stop_file, self.on_message, self.signum = Path(stop_file), on_message, None

    def __call__(self) -> None:
        for signum in interrupts.take():
            if self.signum is None:
                self.signum = signum
                self.stop_file.touch()
                self.on_message(f"{interrupts.signal_name(signum)}: stopping once the running blocks finish; no other "
                                f"block starts{interrupts.again_hint(signum, 'to stop at once, keeping nothing')}...")
            elif signum == signal.SIGINT:
                raise interrupts.Interrupted(signum)


def polling(futures, poll):
    """``futures`` as they finish, calling ``poll()`` at least every ``POLL_S`` meanwhile."""
    from distributed import as_completed

    finishing = as_completed(futures)
    while not finishing.is_empty():
        poll()
        batch = finishing.next_batch(block=False)
        if not batch:
            time.sleep(POLL_S)
        yield from batch


def keep_stopped(tmps, finals, done, plan, keep, scale, axes) -> dict:
    """A stopped run's outputs, ``{asked path: where it went}``: the finished blocks' parts of
    classes and probabilities; nothing for objects (their ids need every block) or no finished block."""
    if plan.mode or not done:
        return {}
    kept = {}
    for path, tmp in tmps.items():
        (tmp / STOP_FILE).unlink(missing_ok=True)
        kept[path] = Path(keep(path)) if keep is not None else path
    # All or nothing: after a second Ctrl-C here, "nothing was written" is true.
    omezarr.finish_outputs([(tmps[path], where, finals[path]) for path, where in kept.items()],
                           scale=scale, axes=axes)
    return kept
