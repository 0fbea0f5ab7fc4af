"""What the Keras backend runs on: GPUs (name, memory), CPU threads; thread and memory settings.

Asked in the worker (Keras is imported inside the functions: the napari process imports this
module's callers without Keras). The choices made from these facts are in ``core/nn/devices.py``.
"""

from __future__ import annotations

import os
import subprocess

from napari_unet.core.config import TrainConfig
from napari_unet.core.nn.devices import Device, cpu_has_bf16, describe


def _tf_gpus():
    import keras

    if keras.backend.backend() != "tensorflow":
        return None, []
    import tensorflow as tf

    return tf, tf.config.list_physical_devices("GPU")


def gpu_names() -> list:
    """Names of the GPUs the Keras backend (TensorFlow or JAX) sees."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    tf, gpus = _tf_gpus()
    return [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]


def cpu_threads(threads: int = 0) -> int:
    """The CPU threads training uses: ``threads``, else the backend's, else one per usable core."""
    tf, _ = _tf_gpus()
    n = threads or (tf.config.threading.get_intra_op_parallelism_threads() if tf else 0)
    if not n:  # 0 means the library default: one thread per usable core
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return n


def _first_visible_gpu() -> int:
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    return int(first) if first.isdigit() else 0


def gpu_memory() -> tuple[int | None, int | None]:
    """``(total, free)`` bytes of the first visible NVIDIA GPU (nvidia-smi), else of JAX's first
    GPU (its allocator's limit), else ``(None, None)``."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total,memory.free", "--format=csv,noheader,nounits",
                              f"--id={_first_visible_gpu()}"], capture_output=True, text=True, timeout=20)
        total, free = (int(float(v)) * 1024**2 for v in out.stdout.strip().splitlines()[0].split(","))
        return total, free
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    stats = _jax_gpu_stats()
    if stats and "bytes_limit" in stats:
        return stats["bytes_limit"], stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    return None, None


def _jax_gpu_stats() -> dict | None:
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax

    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    return (gpus[0].memory_stats() or None) if gpus else None


def gpu_peak_bytes() -> int | None:
    """The most GPU memory the backend has held in this process (first GPU); None on a CPU."""
    stats = _jax_gpu_stats()
    if stats is not None:
        return stats.get("peak_bytes_in_use")
    tf, gpus = _tf_gpus()
    if not gpus:
        return None
    try:
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    except (ValueError, RuntimeError):
        return None


# The devices a MirroredStrategy spans; None: every GPU TensorFlow sees. Tests set logical CPUs here.
STRATEGY_DEVICES: list | None = None


def mirrored_strategy():
    """A ``tf.distribute.MirroredStrategy`` over every GPU when TensorFlow sees more than one (or
    over ``STRATEGY_DEVICES``); None otherwise, and always on JAX (its own sharding is not used)."""
    tf, gpus = _tf_gpus()
    if tf is None:
        return None
    names = STRATEGY_DEVICES or [gpu.name.replace("physical_device:", "") for gpu in gpus]
    return tf.distribute.MirroredStrategy(names) if len(names) > 1 else None


def device_facts(threads: int = 0) -> Device:
    """The ``Device`` training runs on (``core/nn/devices.py`` chooses from it)."""
    names = gpu_names()
    total, free = gpu_memory() if names else (None, None)
    return Device(gpus=len(names), gpu_name=names[0] if names else None, gpu_free_bytes=free,
                  gpu_total_bytes=total, cpu_threads=cpu_threads(threads), cpu_bf16=cpu_has_bf16())


def describe_device(threads: int = 0, device: Device | None = None) -> str:
    """``"GPU: <name>, <used> of <total> GiB used"`` when the backend sees a GPU, else
    ``"CPU (<n> threads)"`` (and the backend, when it is not TensorFlow)."""
    import keras

    device = device or device_facts(threads)
    backend = keras.backend.backend()
    return describe(device) + ("" if device.gpus or backend == "tensorflow" else f", {backend}")


def configure_device(train_cfg: TrainConfig) -> str:
    """Set TensorFlow's thread counts and GPU memory growth; call before any TF op.

    Returns the device description used in the "start" event.
    """
    tf, gpus = _tf_gpus()
    if tf is not None:
        if train_cfg.threads > 0:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(train_cfg.threads)
                tf.config.threading.set_inter_op_parallelism_threads(min(2, train_cfg.threads))
            except RuntimeError:
                pass  # TensorFlow is already running; its thread pools are fixed now
        for gpu in gpus:
            try:
                # Take GPU memory as needed instead of all of it up front.
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:
                pass
    return describe_device(train_cfg.threads)
