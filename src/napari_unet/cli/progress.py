"""Jobs followed to their end with a terminal progress bar, and the lines that tell the user how they ended."""

from __future__ import annotations

import signal
import sys

import numpy as np
from tqdm import tqdm

from napari_unet.core import events
from napari_unet.core.train.pairs import model_config_for
from napari_unet.runtime import engine, interrupts, present
from napari_unet.runtime.jobs.predict import start_prediction
from napari_unet.runtime.jobs.train import start_training


def follow(job, on_event=None, desc="Working", unit="step") -> dict:
    """Run a job to its end with a terminal progress bar.

    Ctrl-C, SIGTERM and SIGHUP ask it to stop gracefully (see ``runtime.interrupts``); a second
    Ctrl-C kills the worker.
    """
    bar = tqdm(total=1, desc=desc, unit=unit, dynamic_ncols=True)

    def show(event):
        if on_event is not None:
            on_event(event, bar)

    try:
        with interrupts.deferred():
            job.start()
            return engine.run_to_end(job, on_event=show, after_poll=_SignalAnswer(job, bar), idle_s=0.05)
    finally:
        bar.close()


class _SignalAnswer:
    """Called after each poll: asks the job to stop at the first signal, kills it at a second Ctrl-C."""

    def __init__(self, job, bar):
        self.job, self.bar = job, bar
        self.stopping = False

    def __call__(self) -> None:
        for signum in interrupts.take():
            if self.stopping and signum == signal.SIGINT:
                self.job.kill()
                raise interrupts.Interrupted(signum)
            if not self.stopping:
                self.stopping = True
                self.bar.write(f"{interrupts.signal_name(signum)}: stopping after the current batch"
                               f"{interrupts.again_hint(signum, 'to kill')}...")
                self.job.stop()


class JobFailed(RuntimeError):
    """A job that failed in the worker; its text is the one line the user sees."""


def raise_on_error(final: events.Final, what: str):
    if isinstance(final, events.Error):
        raise JobFailed(present.failed_line(final, what))


def train_with_progress(image, labels, model_cfg, train_cfg, out_dir, resume=None,
                        overwrite=False, extra_pairs=()) -> events.Final:
    model_cfg = None if resume else model_config_for(  # continuing keeps the model's architecture
        model_cfg, [(image, labels), *extra_pairs], train_cfg.annotation_mode, instances=train_cfg.instances)
    job = start_training(image, labels, model_cfg=model_cfg, train_cfg=train_cfg, out_dir=str(out_dir),
                         resume_from=resume, overwrite=overwrite, extra_pairs=extra_pairs)

    def show(event, bar):
        if isinstance(event, events.Start):
            bar.total = 100  # percent: the steps or the time cap, whichever ends training first
            bar.write(present.start_line(event))
        elif isinstance(event, events.Batch):
            bar.update(round(event.progress * bar.total) - bar.n)  # steps or time, whichever ends first
            bar.set_postfix(**present.batch_fields(event))
        elif isinstance(event, events.Epoch):
            bar.write(present.epoch_line(event))
        elif isinstance(event, events.Stage):  # pretraining
            bar.write(event.message)
        elif isinstance(event, events.Warn):
            bar.write(present.warning_line(event), file=sys.stderr)

    with job:
        final = follow(job, show, desc="Training", unit="%")
    raise_on_error(final, "Training")
    return final


def _show_stage(bar, desc: str, total: int) -> None:
    """Restart the bar when a new stage (a pass, the writing) begins."""
    if bar.desc != desc:
        bar.reset(total=total)
        bar.set_description(desc, refresh=False)
    elif bar.total != total:
        bar.total = total


def predict_with_progress(volume, model_dir, cfg, channel_axis=None, **outputs):
    """Predict; returns (final event, labels, probs, slices written): arrays are copies unless written to disk."""
    job = start_prediction(volume, str(model_dir), predict_cfg=cfg, channel_axis=channel_axis, **outputs)

    written = []

    def show(event, bar):
        if isinstance(event, events.Progress):  # three-axis: the passes along each axis come first
            _show_stage(bar, present.pass_name(event), event.n_slices)
            bar.update(1)
        elif isinstance(event, events.Slice):
            _show_stage(bar, "Writing" if cfg.three_axis else "Segmenting", event.n_slices)
            bar.update(1)
            written.append(event.index)
        elif isinstance(event, events.Warn):
            bar.write(present.warning_line(event), file=sys.stderr)

    with job:
        final = follow(job, show, desc="Segmenting", unit="slice")
        raise_on_error(final, "Segmentation")
        labels = None if outputs.get("out_path") else np.array(job.output("labels"))
        probs = None
        if cfg.return_probabilities and not outputs.get("prob_path"):
            probs = np.array(job.output("probs"))
    return final, labels, probs, len(written)  # slices written: known even when the worker was ended


def say(lines) -> None:
    """Lines for the user: warnings on stderr, the rest on stdout."""
    for text in lines:
        print(text, file=sys.stderr if text.startswith("warning") else sys.stdout)


def say_why_unfinished(message: str) -> None:
    """The failure line on stderr; after a signal, the command line's "stopped by ..." is that
    line, and this one, saying what was kept, goes to stdout."""
    print(message, file=sys.stdout if interrupts.last_signal() is not None else sys.stderr)
