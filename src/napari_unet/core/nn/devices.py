"""The device training runs on, and the choices that follow from it: batch and patch size, precision.

Pure functions over a ``Device`` (no Keras): the worker fills one in (``core/nn/hardware.py``) and the
trainer applies what these return. See docs/defaults.md.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3

# Bytes per pixel of a batch that a float32 training step of the default U-Net (16 base filters,
# depth 3) holds. Measured on the CPU with TensorFlow (benchmarks/activation_memory.py,
# results/activation_memory.md): 1566 B/px as the slope of the peak memory over the batch size,
# 1764 B/px as the sum of every layer's output; the larger is used.
TRAIN_BYTES_PER_PIXEL = 1764.0
DEFAULT_FILTERS = 16
# Share of the GPU's free memory a batch may take (the rest: the model, cuDNN workspaces, the
# allocator's slack, validation and the live preview).
GPU_MEMORY_SHARE = 0.5
UNKNOWN_GPU_FREE_BYTES = 4 * GIB  # when the free memory cannot be read: size for a small GPU

CPU_SIZES = (4, 96)  # (batch, patch): the step a 2-core CPU takes in ~45 ms
GPU_SIZES = (16, 256)  # the largest the GPU gets; smaller when its memory is short
GPU_BATCHES = (16, 8, 4, 2, 1)
GPU_PATCHES = (256, 192, 128, 96)

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Whether "auto" precision uses bfloat16 on a CPU that has it: only if it pays in speed and keeps
# accuracy (benchmarks/bf16.py, results/bf16.md).
AUTO_BF16_ON_CPU = False


@dataclass(frozen=True)
class Device:
    """What training runs on: GPUs (name and memory of the first) or the CPU."""

    gpus: int = 0
    gpu_name: str | None = None
    gpu_free_bytes: int | None = None
    gpu_total_bytes: int | None = None
    cpu_threads: int = 1
    cpu_bf16: bool = False


def cpu_bf16_flags(cpuinfo: str) -> list:
    """The bfloat16 flags (``avx512_bf16``, ``amx_bf16``) in the text of ``/proc/cpuinfo``."""
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]


def cpu_has_bf16(path: str = "/proc/cpuinfo") -> bool:
    """True when the CPU has bfloat16 units (AVX512_BF16 or AMX); False when unknown."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return bool(cpu_bf16_flags(f.read()))
    except OSError:
        return False


def train_bytes(batch: int, patch: int, *, n_filters: int = DEFAULT_FILTERS) -> float:
    """Memory a float32 training step at ``batch`` x ``patch`` px holds for its activations: the
    measured per-pixel figure, scaled by the filters (activations grow with them)."""
    return TRAIN_BYTES_PER_PIXEL * batch * patch * patch * n_filters / DEFAULT_FILTERS


def auto_sizes(device: Device, n_filters: int = DEFAULT_FILTERS) -> tuple[int, int]:
    """``(batch, patch)`` for the device: the CPU defaults, or on a GPU the largest of
    ``GPU_SIZES`` whose step fits in ``GPU_MEMORY_SHARE`` of its free memory (the batch shrinks
    first, then the patch)."""
    if not device.gpus:
        return CPU_SIZES
    free = device.gpu_free_bytes if device.gpu_free_bytes is not None else UNKNOWN_GPU_FREE_BYTES
    budget = GPU_MEMORY_SHARE * free
    for patch in GPU_PATCHES:
        for batch in GPU_BATCHES:
            if train_bytes(batch, patch, n_filters=n_filters) <= budget:
                return batch, patch
    return 1, GPU_PATCHES[-1]


def fit_patch(patch: int, height: int, width: int, multiple: int) -> int:
    """An automatic patch size shrunk to the smallest image, in steps of the model's ``multiple``."""
    return min(patch, min(height, width) // multiple * multiple)


def choose_precision(asked: str, device: Device) -> tuple[str, str | None]:
    """``(Keras dtype policy, warning or None)`` for ``TrainConfig.mixed_precision``.

    "auto": float32 (see ``AUTO_BF16_ON_CPU``); "float16": on a GPU; "bfloat16": on a GPU or a
    CPU with bfloat16 units. Asked where the device lacks it: float32, and one line saying so.
    """
    if asked == "auto":
        asked = "bfloat16" if (AUTO_BF16_ON_CPU and not device.gpus and device.cpu_bf16) else "off"
    if asked == "off":
        return "float32", None
    if device.gpus:
        return f"mixed_{asked}", None
    if asked == "bfloat16" and device.cpu_bf16:
        return "mixed_bfloat16", None
    if asked == "float16":
        return "float32", ("Mixed precision needs a GPU for float16: ignored, training in float32 on the CPU "
                           "(bfloat16 runs on CPUs with AVX512_BF16 or AMX).")
    return "float32", ("Mixed precision bfloat16 needs a GPU or a CPU with AVX512_BF16 or AMX, and this CPU "
                       "has neither: ignored, training in float32.")


def describe(device: Device, gpu_used_bytes: int | None = None) -> str:
    """"GPU: <name> (+n more)" with its memory, or "CPU (<n> threads)"."""
    if not device.gpus:
        return f"CPU ({device.cpu_threads} thread{'' if device.cpu_threads == 1 else 's'})"
    text = f"GPU: {device.gpu_name}" + (f" (+{device.gpus - 1} more)" if device.gpus > 1 else "")
    used = gpu_used_bytes
    if used is None and device.gpu_total_bytes is not None and device.gpu_free_bytes is not None:
        used = device.gpu_total_bytes - device.gpu_free_bytes
    if used is not None and device.gpu_total_bytes:
        text += f", {used / GIB:.1f} of {device.gpu_total_bytes / GIB:.0f} GiB used"
    return text
