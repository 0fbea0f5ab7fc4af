"""Memory a training step of the default U-Net needs per input pixel, measured on the CPU.

Each size runs in a fresh process (TensorFlow, float32): the default model is built and
compiled with the default loss, trained for 3 steps at ``batch`` x ``patch`` px, and the
process's peak resident memory is read. The slope between two batch sizes is the memory per
pixel of a batch (activations kept for the backward pass, their gradients, the allocator's
slack); the model, the optimizer and the traced graph cancel out. Beside it: the float32
bytes of every layer's output per pixel (one forward pass), from the model itself.
``core/nn/devices.py`` sizes GPU batches with the measured slope.

    python benchmarks/activation_memory.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import log, markdown_table, write_json, write_text  # noqa: E402

BATCHES = (2, 10)
PATCH = 256


def one_size(batch: int, patch: int) -> dict:
    """Run in the child: peak RSS after 3 steps, and the forward activations per pixel."""
    import resource

    import keras
    import numpy as np

    from napari_unet.core.config import ModelConfig
    from napari_unet.core.nn.losses import get_loss
    from napari_unet.core.nn.model import build_unet

    model = build_unet(ModelConfig())
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_loss("bce_dice", 1))
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (batch, patch, patch, 1)).astype(np.float32)
    y = np.concatenate([x > 0, np.ones_like(x, bool)], -1).astype(np.float32)
    for _ in range(3):
        model.train_on_batch(x, y)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    probe = keras.Model(model.inputs, [layer.output for layer in model.layers[1:]])
    floats = sum(int(np.prod(o.shape)) for o in probe(np.zeros((1, 64, 64, 1), np.float32)))
    return {"batch": batch, "patch": patch, "peak_rss_mb": peak_mb, "forward_bytes_per_pixel": 4 * floats / 64**2,
            "params": int(model.count_params()), "backend": keras.backend.backend()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_output"))
    parser.add_argument("--one", type=int, nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_size(*args.one)))
        return 0
    rows = []
    for batch in BATCHES:
        out = subprocess.run([sys.executable, __file__, "--one", str(batch), str(PATCH)], capture_output=True,
                             text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        log(f"batch {batch} x {PATCH} px: peak RSS {rows[-1]['peak_rss_mb']:.0f} MB")
    (a, b) = rows
    per_pixel = (b["peak_rss_mb"] - a["peak_rss_mb"]) * 1024**2 / ((b["batch"] - a["batch"]) * PATCH**2)
    result = {"rows": rows, "train_bytes_per_pixel": per_pixel,
              "forward_bytes_per_pixel": rows[0]["forward_bytes_per_pixel"]}
    text = markdown_table(["batch", "patch", "peak RSS (MB)"], [[r["batch"], r["patch"], r["peak_rss_mb"]] for r in rows])
    text += (f"\n\nTraining step, default U-Net ({rows[0]['params']:,} weights, {rows[0]['backend']}, float32): "
             f"{per_pixel:.0f} bytes per pixel of a batch (slope of the peak RSS); one forward pass's layer "
             f"outputs: {result['forward_bytes_per_pixel']:.0f} bytes per pixel.\n")
    print(text)
    write_text(args.out / "activation_memory.md", text)
    write_json(args.out / "activation_memory.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
