"""Events as the text users read: one place for the command line and the docks.

Plain functions from an event (``core.events``) to a string; no Qt, no napari, no Keras. Where
a surface has its own form (a terminal's aligned epoch log, a dock's status sentence) both
forms live here, built from the same pieces.
"""

from __future__ import annotations

from napari_unet.core import events
from napari_unet.runtime.worker import failure_line

GIB = 1024**3
EXPORT_STOPPED = "Export stopped: nothing was written."


# -- training ---------------------------------------------------------------------------------
def device_line(start: events.Start, peak_bytes: int | None = None) -> str:
    """The device, the precision when not float32, the replicas when several, and the training's
    peak GPU memory once an epoch has told it."""
    text = start.device
    if start.precision != "float32":
        text += f", {start.precision}"
    if start.replicas > 1:
        text += f", batch split over {start.replicas}"
    return text if peak_bytes is None else f"{text}; training peak {peak_bytes / GIB:.1f} GiB"


def data_line(start: events.Start) -> str:
    """What training runs on: the slices, the weights and the batches."""
    slices = (f"{start.n_train_slices} annotated slice(s), a strip of each held out for validation"
              if start.val_strips else f"{start.n_train_slices} training and {start.n_val_slices} validation slice(s)")
    return f"{slices}; {start.params:,} weights; batches of {start.batch_size} x {start.patch_size} px"


def result_notes(result: events.TrainingResult) -> list[str]:
    """A training's one-line notes: the objects' tuning, a time cap that cut it short, one slice."""
    return [line for line in (result.objects, result.cut_short, result.more_slices) if line]


def start_line(start: events.Start) -> str:
    """The command line's first line of a training."""
    return f"Device: {device_line(start)}; {data_line(start)}"


def clock(seconds: float) -> str:
    """``4:05``: minutes and seconds, to the nearest second."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def time_left(seconds: float | None) -> str:
    """The time cap's countdown in words; ``-`` without a cap."""
    if seconds is None:
        return "-"
    return f"{clock(seconds)} at most (ends sooner once validation stops improving)"


def batch_fields(batch: events.Batch) -> dict:
    """The epoch, the loss and, under a time cap, the time left (a progress bar's postfix)."""
    fields = {"epoch": batch.epoch or "pretraining", "loss": f"{batch.loss:.3f}"}
    return fields if batch.seconds_left is None else {**fields, "time_left": clock(batch.seconds_left)}


def batch_line(batch: events.Batch) -> str:
    """``epoch 3, loss 0.123``; ``pretraining, loss 0.012`` in the self-supervised phase (epoch 0)."""
    return f"{f'epoch {batch.epoch}' if batch.epoch else 'pretraining'}, loss {batch.loss:.3f}"


def epoch_line(epoch: events.Epoch) -> str:
    """One epoch as a line of the terminal's log (aligned, four decimals, its seconds)."""
    line = f"epoch {epoch.epoch:3d}/{epoch.epochs}  loss {epoch.loss:.4f}"
    if epoch.val_dice is not None:
        line += f"  val_loss {epoch.val_loss:.4f}  val_dice {epoch.val_dice:.4f}"
    return line + f"  ({epoch.seconds:.1f} s, {_waiting(epoch)} waiting for data)"


def epoch_status(epoch: events.Epoch) -> str:
    """One epoch as a dock's status sentence (three decimals)."""
    dice = f", val Dice {epoch.val_dice:.3f}" if epoch.val_dice is not None else ""
    return f"Epoch {epoch.epoch}/{epoch.epochs}: loss {epoch.loss:.3f}{dice} ({_waiting(epoch)} of it waiting for data)"


def _waiting(epoch: events.Epoch) -> str:
    return f"{100 * epoch.data_wait_share:.0f} %"


def warning_line(warn: events.Warn) -> str:
    return "warning: " + warn.message


# -- prediction -------------------------------------------------------------------------------
def pass_name(progress: events.Progress) -> str:
    """``Pass 2 of 3``: which of a three-axis prediction's passes runs."""
    return f"Pass {progress.axis + 1} of 3"


def pass_line(progress: events.Progress) -> str:
    """``Pass 2 of 3: slice 5 of 40``."""
    return f"{pass_name(progress)}: slice {progress.index + 1} of {progress.n_slices}"


# -- export and failures ----------------------------------------------------------------------
def stage_line(stage: events.Stage, what: str = "Export") -> str:
    """``Export: packaging...``: the step a job moved on to."""
    return f"{what}: {stage.message}..."


def exported_line(final: events.Exported) -> str:
    return (f"Package written to {final.path} (weights: {', '.join(final.weights)}); "
            "it passed bioimageio.core's test_model.")


def failed_line(final: events.Error, what: str) -> str:
    """``Training failed: <the one line of the error>``."""
    return f"{what} failed: {failure_line(final, what)}"
