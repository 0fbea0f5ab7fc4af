"""Device-aware choices (core/nn/devices.py) and how training applies them."""

import os

import numpy as np
import pytest

from napari_unet.core.config import ModelConfig, TrainConfig
from napari_unet.core.nn import devices, hardware
from napari_unet.core.nn.devices import Device, auto_sizes, choose_precision, cpu_bf16_flags
from napari_unet.core.train.loop import train, with_auto_sizes

from volumes import disc_volume

GIB = 1024**3
CPU = Device(cpu_threads=2)
CPU_BF16 = Device(cpu_threads=2, cpu_bf16=True)
H200 = Device(gpus=1, gpu_name="NVIDIA H200", gpu_free_bytes=140 * GIB, gpu_total_bytes=141 * GIB)


def test_bf16_flags_are_read_from_cpuinfo():
    text = ("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n\n"
            "processor\t: 1\nflags\t: fpu amx_bf16\n")
    assert cpu_bf16_flags(text) == ["avx512_bf16", "amx_bf16"]
    assert cpu_bf16_flags("flags\t: fpu sse avx512f avx512bw\nbugs\t: avx512_bf16\n") == []


def test_cpu_keeps_the_old_defaults_and_a_gpu_gets_larger_batches_within_its_memory():
    assert auto_sizes(CPU) == (4, 96) == (TrainConfig.model_fields["batch_size"].default or 4, 96)
    assert auto_sizes(H200) == (16, 256)
    small = Device(gpus=1, gpu_name="small", gpu_free_bytes=2 * GIB)
    batch, patch = auto_sizes(small)
    assert (batch, patch) != (16, 256) and devices.train_bytes(batch, patch) <= devices.GPU_MEMORY_SHARE * 2 * GIB
    assert devices.train_bytes(2 * batch, patch) > devices.GPU_MEMORY_SHARE * 2 * GIB  # the largest that fits
    assert auto_sizes(Device(gpus=1, gpu_name="?")) == auto_sizes(Device(gpus=1, gpu_free_bytes=4 * GIB))
    eight = Device(gpus=1, gpu_name="8 GiB", gpu_free_bytes=8 * GIB)
    assert auto_sizes(eight) == (16, 256) and auto_sizes(eight, n_filters=64) < (16, 256)  # wider: more memory


def test_cpu_threads_is_one_where_the_core_count_is_unknown(monkeypatch):
    """os.cpu_count() may be None: one thread then, not None."""
    monkeypatch.setattr(hardware, "_tf_gpus", lambda: (None, []))
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert hardware.cpu_threads() == 1 and hardware.cpu_threads(3) == 3


def test_precision_choices():
    assert choose_precision("auto", CPU) == ("float32", None)
    assert choose_precision("auto", H200) == ("float32", None)  # off unless asked (README)
    assert choose_precision("off", H200) == ("float32", None)
    assert choose_precision("float16", H200) == ("mixed_float16", None)
    assert choose_precision("bfloat16", H200) == ("mixed_bfloat16", None)
    assert choose_precision("bfloat16", CPU_BF16) == ("mixed_bfloat16", None)
    policy, warning = choose_precision("float16", CPU_BF16)
    assert policy == "float32" and "needs a GPU" in warning and "\n" not in warning
    policy, warning = choose_precision("bfloat16", CPU)
    assert policy == "float32" and "AVX512_BF16 or AMX" in warning and "ignored" in warning


def test_auto_sizes_fill_only_what_was_left_to_auto_and_fit_the_image():
    model = ModelConfig()
    cfg = with_auto_sizes(TrainConfig(), H200, model, 512, 203)
    assert (cfg.batch_size, cfg.patch_size) == (16, 200)  # shrunk to the image, a multiple of 8
    cfg = with_auto_sizes(TrainConfig(batch_size=3), H200, model, 512, 512, replicas=2)
    assert (cfg.batch_size, cfg.patch_size) == (3, 256)  # a batch given is kept (global)
    assert with_auto_sizes(TrainConfig(), H200, model, 512, 512, replicas=2).batch_size == 32  # per GPU
    assert with_auto_sizes(TrainConfig(), CPU, model, 64, 64).patch_size == 64


@pytest.fixture()
def small_volume():
    image, labels, _ = disc_volume((4, 40, 40), annotated=(0, 3), discs=((20, 20, 80),))
    return image, labels


@pytest.mark.parametrize("has_bf16", [True, False])
def test_bfloat16_runs_where_the_cpu_has_it_and_is_refused_in_one_line_elsewhere(small_volume, tmp_path,
                                                                                   monkeypatch, has_bf16):
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: has_bf16)
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, mixed_precision="bfloat16", augment=False)
    events = list(train(*small_volume, model_cfg=ModelConfig(n_filters=4, depth=2), train_cfg=cfg,
                        out_dir=tmp_path / "m"))
    start, warnings = events[0], [e.message for e in events if e.kind == "warning"]
    if start.device.startswith("GPU"):
        pytest.skip("a GPU runs bfloat16 whatever the CPU has")
    assert start.precision == ("mixed_bfloat16" if has_bf16 else "float32")
    assert start.mixed_precision == has_bf16 and len(warnings) == (0 if has_bf16 else 1)
    assert events[-1].kind == "done" and np.isfinite(events[-1].training.history["loss"][0])
    saved = TrainConfig.from_dict(__import__("json").loads((tmp_path / "m" / "bundle.json").read_text())
                                  ["train_config"])
    assert (saved.batch_size, saved.patch_size) == (4, 40)  # auto on a CPU, the patch fitted to 40 px
