"""What runs inside the spawned worker process, plus the shared-memory helpers both sides use.

The worker imports this module and then the job's own module, so this file imports only the
standard library and numpy at module level: never napari, Qt, keras or tensorflow. The job
functions import the core (and through it keras) inside their bodies.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import importlib
import math
import multiprocessing
import os
import pickle
import re
import signal
import sys
import threading
import time
import traceback
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from napari_unet.core.events import Done, Error, Event, Final, WorkerStarted
from napari_unet.runtime.logs import first_line

OOM_HINT = "Reduce the batch size or the patch/tile size."
# Events are progress messages; bulk data goes through shared memory or files.
MAX_EVENT_BYTES = 16 << 20
# How long a worker whose parent died may take to stop before it exits anyway.
ORPHAN_GRACE_S = 10.0
# What a terminal or a service manager sends to stop the command line.
TERMINAL_SIGNALS = frozenset(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
# Added to the worker's nice value: on a machine with few cores, napari's event loop must get
# the CPU at once when it needs it; an otherwise idle machine still gives the worker every core.
WORKER_NICENESS = 10


# -- shared memory, used by both processes ----------------------------------------------
def attach_segment(name: str) -> SharedMemory:
    """Open a segment the parent created, without making this process its owner.

    Before Python 3.13 attaching registers the segment with the resource tracker, which may
    then unlink it or warn about a "leak" that is not one: the parent owns and unlinks it.
    """
    try:
        return SharedMemory(name=name, track=False)  # Python >= 3.13
    except TypeError:
        pass
    from multiprocessing import resource_tracker

    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return SharedMemory(name=name)
    finally:
        resource_tracker.register = register


def segment_view(shm: SharedMemory, shape, dtype) -> np.ndarray:
    """A zero-copy array over the segment.

    ``np.frombuffer`` keeps a buffer export on the mapping, so closing the segment while a
    view is alive raises BufferError (handled in ``close_segment``) instead of unmapping the
    memory under the view, which would crash the process on the next access.
    """
    count = math.prod(shape)
    if count == 0:
        return np.zeros(shape, dtype)
    return np.frombuffer(shm.buf, dtype=dtype, count=count).reshape(shape)


def close_segment(shm: SharedMemory) -> None:
    """Close this process's mapping; if views still use it, leave it to them."""
    try:
        shm.close()
    except BufferError:
        # The views keep the mapping alive and it is unmapped when the last one goes; drop
        # our handle so that SharedMemory.__del__ does not try (and complain) again.
        shm._mmap = None
        shm.close()


# -- the job wrapper ------------------------------------------------------------------------
def run_job(target, params, array_specs, output_specs, events, stop_event):
    """Entry point of a one-job worker process: run ``target`` and forward its events to ``events``."""
    _enter_worker(stop_event)
    events.only_send()
    try:
        run_one(target, params, array_specs, output_specs, _unless_orphaned(events.put), stop_event)
    finally:
        _exit_worker(events)


def serve(commands, events, stop_event):
    """Entry point of a warm worker: run the jobs that arrive on ``commands``, one after another.

    A command is ``(seq, target, params, array_specs, output_specs)``; each event goes out as
    ``(seq, event)`` so the parent can drop what a job it gave up on still sends. ``None`` (or
    the parent's end) ends the loop. Imported modules and ``MODEL_CACHE`` stay between jobs:
    that is what makes the second job start fast.
    """
    _enter_worker(stop_event)
    commands.only_receive()
    events.only_send()
    send = _unless_orphaned(events.put)
    try:
        while True:
            command = commands.get()
            if command is None:
                break
            seq, target, params, array_specs, output_specs = command
            run_one(target, params, array_specs, output_specs, lambda event, seq=seq: send((seq, event)), stop_event)
    finally:
        _exit_worker(events)


def _unless_orphaned(put):
    """``put``, but once the parent is gone (its end of the pipe closed) events are dropped: the
    job still runs to its end, so a stopped training saves its best model."""
    def send(event) -> None:
        try:
            put(event)
        except OSError:  # BrokenPipeError: nobody reads any more
            pass

    return send


def _enter_worker(stop_event) -> None:
    leave_terminal_signals()
    _lower_priority()
    _stop_when_orphaned(stop_event)
    faulthandler.enable(file=sys.stderr)


def _exit_worker(events) -> None:
    events.close()  # every event has reached the pipe: a put returns once it has
    # Everything is reported and written; skip the interpreter teardown, which takes
    # seconds once TensorFlow is loaded and would keep the parent waiting in close().
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(0)


def run_one(target, params, array_specs, output_specs, put, stop_event) -> None:
    """Run one job: open its arrays, hand each event it yields to ``put``, end with one ``Final``."""
    segments = []
    arrays = outputs = job = None
    params = dict(params)
    log_path = params.pop("_log", None)
    _stderr_to_log(log_path)
    try:
        put(WorkerStarted(os.getpid()))
        # Before the job's import, so that e.g. KERAS_BACKEND is seen when keras loads.
        os.environ.update({str(k): str(v) for k, v in params.pop("_env", {}).items()})
        # As TensorFlow's memory growth (core.train): JAX then takes GPU memory as needed,
        # not 75 % of it up front, so a second process (napari's, a preview) still fits.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        arrays = {name: _open_input(spec, segments) for name, spec in array_specs.items()}
        outputs = {name: _open_output(spec, segments) for name, spec in output_specs.items()}
        job = resolve_target(target)(arrays=arrays, outputs=outputs, stop_event=stop_event, **params)
        _forward(job, put)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)  # into the log
        put(error_event(exc, log_path))
    finally:
        if job is not None and hasattr(job, "close"):
            try:
                job.close()
            except Exception:
                traceback.print_exc(file=sys.stderr)
        del arrays, outputs, job
        for shm in segments:
            close_segment(shm)


def _forward(job, put) -> None:
    for event in job:
        _check_event(event)
        put(event)
        if isinstance(event, Final):
            return
    put(Done())


def leave_terminal_signals() -> None:
    """Let the parent alone decide what Ctrl-C, SIGTERM and SIGHUP mean.

    They reach the whole process group (Ctrl-C, a closing terminal, ``kill -- -PGID``); the
    parent answers them with a graceful stop, which the worker must live through to save the
    model. So the worker moves to its own process group, and only then unblocks the signals the
    parent blocked while starting it (``engine._terminal_signals_blocked``). Its own SIGTERM
    stays the default: it is how the parent ends a worker that does not stop.
    """
    if hasattr(os, "setpgid"):
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # sent to this process alone: still the parent's call
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, TERMINAL_SIGNALS)


def _stderr_to_log(path) -> None:
    """Send everything the worker writes to stderr into its log file.

    Tracebacks, TensorFlow's messages and, through faulthandler, the Python stack of a crash
    all land there; the user sees one line, and the parent removes the file when the job ends
    well. Without a log file (none could be created) stderr stays where it was.
    """
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return
    sys.stderr.flush()
    os.dup2(fd, 2)  # fd 2 is what faulthandler writes to: each job's crash lands in its own log
    os.close(fd)


def _lower_priority() -> None:
    if hasattr(os, "nice"):  # POSIX; on Windows the worker keeps the normal priority
        try:
            os.nice(WORKER_NICENESS)
        except OSError:
            pass


def resolve_target(target: str):
    module_name, _, function_name = target.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise ValueError(f"Job target {target!r}: module {module_name} has no {function_name!r}.") from None


def error_event(exc: BaseException, log_path=None) -> Error:
    """The event that reports a failed job: a one-line message, a hint the user can act on,
    and the log file that holds the traceback."""
    message = first_line(str(exc)) or type(exc).__name__
    if _is_out_of_memory(exc):
        hint = OOM_HINT
    elif isinstance(exc, ValueError):
        hint = message  # already written for the user
    else:
        message = f"{type(exc).__name__}: {message}"  # unexpected: the type says what broke
        hint = "This is a bug in napari-unet or a library; please report it with the log."
    return Error(
        message=message,
        error_type=type(exc).__name__,
        hint=hint,
        log=None if log_path is None else str(log_path),
        traceback="".join(traceback.format_exception(exc)),
    )


def failure_line(final: Error, what: str = "The job") -> str:
    """The one line a user sees for an ``Error``, in the CLI and in the docks alike."""
    message = first_line(final.message or "") or f"{what} failed."
    hint = first_line(final.hint or "")
    line = message if not hint or hint in message else f"{message} {hint}"
    if final.log:
        line += f" (details: {final.log})"
    return line



def _is_out_of_memory(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:  # keras may wrap the original error
        seen.add(id(exc))
        text = str(exc)
        if (
            isinstance(exc, MemoryError)
            or type(exc).__name__ == "ResourceExhaustedError"
            or re.search(r"\bOOM\b", text)
            or "out of memory" in text.lower()
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _check_event(event) -> None:
    if not isinstance(event, Event):
        raise TypeError(f"A job must yield napari_unet.core.events.Event objects, got {event!r}.")
    try:
        size = len(pickle.dumps(event))
    except Exception as exc:
        # The queue would drop it silently in its feeder thread; fail loudly instead.
        raise TypeError(f"Event {event.kind!r} cannot be sent to the parent: {exc}") from exc
    if size > MAX_EVENT_BYTES:
        raise TypeError(
            f"Event {event.kind!r} is {size} bytes; events must stay small: write arrays into the job's outputs."
        )


def _shared_view(spec, segments):
    _, name, shape, dtype = spec
    shm = attach_segment(name)
    segments.append(shm)
    return segment_view(shm, shape, dtype)


def _open_input(spec, segments):
    kind = spec[0]
    if kind == "shm":
        view = _shared_view(spec, segments)
        view.flags.writeable = False  # an input; results go to the outputs
        return view
    if kind == "lazy":
        from napari_unet.io.images import open_lazy

        array, _meta = open_lazy(spec[1])
        return array
    raise ValueError(f"Unknown input kind {kind!r}.")


def _open_output(spec, segments):
    kind = spec[0]
    if kind == "shm":
        return _shared_view(spec, segments)
    if kind == "zarr":
        import zarr

        return zarr.open_array(spec[1], mode="r+")
    raise ValueError(f"Unknown output kind {kind!r}.")


def _stop_when_orphaned(stop_event) -> None:
    """If the parent dies without stopping us, stop the job, then exit: never run on alone."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        parent.join()
        stop_event.set()
        time.sleep(ORPHAN_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="napari-unet-parent-watch", daemon=True).start()


# -- models kept between the jobs of a warm worker -------------------------------------------
MODEL_CACHE_SIZE = 2  # models kept loaded: a few megabytes each, plus their compiled functions
MODEL_CACHE: dict = {}  # (folder, its bundle file's identity) -> (model, meta), oldest first


def load_model_cached(model_dir):
    """``core.bundle.load_bundle(model_dir)``, kept in memory while the model folder is unchanged.

    The key holds the inode and modification time of what the folder's save replaced, so a
    model written again under the same name (atomic save: a new folder) is loaded again.
    """
    from napari_unet.core.bundle import load_bundle

    key = _model_key(model_dir)
    if key not in MODEL_CACHE:
        while len(MODEL_CACHE) >= MODEL_CACHE_SIZE:
            MODEL_CACHE.pop(next(iter(MODEL_CACHE)))
        MODEL_CACHE[key] = load_bundle(model_dir)
    return MODEL_CACHE[key]


def _model_key(model_dir) -> tuple:
    path = os.path.abspath(model_dir)
    marker = os.path.join(path, "bundle.json")
    try:
        info = os.stat(marker if os.path.isdir(path) else path)
    except OSError:
        return (path, None)  # load_bundle says what is wrong
    return (path, info.st_ino, info.st_mtime_ns, info.st_size)


# -- the jobs ---------------------------------------------------------------------------------
def warm_up_job(arrays, outputs, stop_event):
    """Import Keras (and its backend) now, so that the next job of this warm worker starts fast.

    GPUs get memory growth first, as training sets it, so the warm-up takes no GPU memory up front.
    """
    from napari_unet.core.config import TrainConfig
    from napari_unet.core.nn.hardware import configure_device

    configure_device(TrainConfig())
    return
    yield  # a generator that sends nothing: the worker adds the Done


def train_job(arrays, outputs, stop_event, model_cfg, train_cfg, out_dir, resume_from=None, overwrite=False,
              extra_pairs=0):
    """Train a U-Net on ``arrays["image"]`` / ``arrays["labels"]`` and ``extra_pairs`` more pairs
    (``image_1`` / ``labels_1``, ...); yields the trainer's events. With a live input
    ``arrays["preview_request"]`` (one int64 the parent writes), it previews that slice too."""
    from napari_unet.core.config import ModelConfig, TrainConfig
    from napari_unet.core.nn.hardware import configure_device
    from napari_unet.core.train.loop import train
    from napari_unet.core.train.preview import decode_request

    request = arrays.get("preview_request")

    train_cfg = TrainConfig.from_dict(train_cfg)
    configure_device(train_cfg)
    yield from train(
        arrays["image"],
        arrays["labels"],
        None if model_cfg is None else ModelConfig.from_dict(model_cfg),
        train_cfg,
        out_dir,
        stop_event=stop_event,
        resume_from=resume_from,
        overwrite=overwrite,
        extra_pairs=[(arrays[f"image_{k}"], arrays[f"labels_{k}"]) for k in range(1, extra_pairs + 1)],
        preview_request=None if request is None else (lambda: decode_request(request[0])),
    )


def predict_job(arrays, outputs, stop_event, model_dir, predict_cfg, channel_axis=None, source_path=None):
    """Segment ``arrays["volume"]`` with a saved model into ``outputs``; yields one event per slice.

    ``source_path``: the file a lazy volume is read from, named in its read errors.
    """
    from napari_unet.core.config import PredictConfig
    from napari_unet.core.predict.volume import bundle_predictor
    from napari_unet.io.tiff import NamedReads

    volume = arrays["volume"] if source_path is None else NamedReads(arrays["volume"], source_path)
    model, meta = load_model_cached(model_dir)
    predict = bundle_predictor(model, meta, PredictConfig.from_dict(predict_cfg), channel_axis=channel_axis,
                               out_labels=outputs["labels"], out_probs=outputs.get("probs"), stop_event=stop_event)
    for event in predict(volume):
        # The finished arrays are already in the outputs; never send them through the queue.
        yield dataclasses.replace(event, outputs=None) if isinstance(event, Done) else event


def export_job(arrays, outputs, stop_event, model_dir, out_path, overwrite=False, name=None, authors=(),
               license="CC-BY-4.0", image_name=None):
    """Export a model folder as a bioimage.io package; test tensors come from ``arrays["image"]``."""
    from napari_unet.core.bioimageio.export import export_package

    yield from export_package(model_dir, out_path, arrays["image"], overwrite=overwrite, name=name,
                              authors=authors, license=license, image_name=image_name)


def rank_job(arrays, outputs, stop_event, model_dir, slices, channel_axis=None):
    """Rank ``slices`` of ``arrays["volume"]`` by the model's uncertainty (``core.uncertainty``);
    yields ``events.Progress`` per slice, then ``events.Ranked``."""
    from napari_unet.core.bundle import model_config_of
    from napari_unet.core.config import PredictConfig
    from napari_unet.core.predict.uncertainty import rank_slices
    from napari_unet.core.predict.volume import bundle_predictor

    model, meta = load_model_cached(model_dir)
    # The training image's intensity mapping: the slices ranked are a sample of that image.
    predict = bundle_predictor(model, meta, PredictConfig(normalize="model"), channel_axis=channel_axis,
                               stop_event=stop_event)
    yield from rank_slices(arrays["volume"], slices, predict, model_config_of(meta).n_classes)
