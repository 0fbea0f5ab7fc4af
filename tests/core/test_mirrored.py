"""Several devices: training under tf.distribute.MirroredStrategy, here over 2 logical CPUs.

The logical devices must be made before TensorFlow initialises, so the training runs in a
child process and leaves this one as it was. JAX does not use the strategy (README).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                                reason="MirroredStrategy is TensorFlow's; on JAX training uses one device")

CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from napari_unet.core.nn import hardware
    from napari_unet.core.config import ModelConfig, TrainConfig
    from napari_unet.core.train.loop import train

    hardware.STRATEGY_DEVICES = ["/cpu:0", "/cpu:1"]
    rng = np.random.default_rng(0)
    _, y, x = np.mgrid[0:4, 0:32, 0:32]
    truth = (((y - 16) ** 2 + (x - 16) ** 2) < 60).astype(np.uint8)
    image = (truth * 120 + 40 + rng.normal(0, 10, truth.shape)).clip(0, 255).astype(np.uint8)
    labels = np.zeros_like(truth)
    labels[[0, 3]] = truth[[0, 3]]
    cfg = TrainConfig(epochs=1, steps_per_epoch=3, batch_size=4, patch_size=32, augment=False)
    events = list(train(image, labels, model_cfg=ModelConfig(n_filters=4, depth=2), train_cfg=cfg, out_dir=sys.argv[1]))
    start, epoch, final = events[0], [e for e in events if e.kind == "epoch"][0], events[-1]
    print(json.dumps({"replicas": start.replicas, "loss": epoch.loss, "val_dice": epoch.val_dice,
                      "kind": final.kind, "saved": final.training.model_saved,
                      "strategy": type(hardware.mirrored_strategy()).__name__}))
""")


def test_one_epoch_under_a_mirrored_strategy_over_two_devices(tmp_path):
    import math

    out = tmp_path / "model"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    child = subprocess.run([sys.executable, "-c", CHILD, str(out)], capture_output=True, text=True, env=env,
                           timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["strategy"] == "MirroredStrategy" and result["replicas"] == 2
    assert math.isfinite(result["loss"]) and result["loss"] > 0 and 0 <= result["val_dice"] <= 1
    assert result["kind"] == "done" and result["saved"] and (out / "bundle.json").is_file()
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["train_config"]["batch_size"] == 4  # a batch given is the global batch
