"""Which intensity normalisation segments a volume whose range differs from the training data.

Trains a class model (cell vs membrane) on the built-in synthetic cells stack mapped to uint8,
then segments that stack as uint8, the same stack scaled to uint16 (x 257, as a 16-bit camera
would record it), and a second stack (another seed) as uint8, each with the intensities mapped
by the training percentiles stored in the model ("model") and by the volume's own ("volume").
Prints the predicted foreground fraction against the true one, and the Dice.

    python benchmarks/normalization.py --seconds 90
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np


def as_uint8(image):
    lo, hi = np.percentile(image, (0.1, 99.9))
    return (np.clip((image - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    args = parser.parse_args(argv)

    from napari_unet.core.bundle import load_bundle
    from napari_unet.core.config import PredictConfig, TrainConfig
    from napari_unet.core.events import Warn
    from napari_unet.core.metrics import dice
    from napari_unet.core.predict.volume import bundle_predictor
    from napari_unet.samples.synthetic import make_cells_volume
    from napari_unet.core.train.loop import train

    sample = make_cells_volume()
    image = as_uint8(sample["image"])
    with tempfile.TemporaryDirectory() as folder:
        *_, final = train(image, sample["labels"], model_cfg=None, train_cfg=TrainConfig(max_seconds=args.seconds),
                          out_dir=f"{folder}/m")
        model, meta = load_bundle(final.training.model_dir)
    other = make_cells_volume(seed=1)
    cases = {
        "uint8 (training stack)": (image, sample["labels_full"]),
        "uint16 = uint8 x 257": (image.astype(np.uint16) * 257, sample["labels_full"]),
        "uint8, another stack": (as_uint8(other["image"]), other["labels_full"]),
    }
    rows = []
    for name, (volume, truth) in cases.items():
        for normalize in ("model", "volume"):
            sent = list(bundle_predictor(model, meta, cfg=PredictConfig(normalize=normalize))(volume))
            pred = sent[-1].outputs["labels"]
            warned = any(isinstance(e, Warn) for e in sent)
            rows.append({"volume": name, "normalize": normalize, "foreground": float(pred.mean()),
                         "true_foreground": float((truth > 0).mean()),
                         "dice": float(dice(pred > 0, truth > 0, label=True)), "warned": warned})
            print(json.dumps(rows[-1]))
    print("\n| volume | normalize | foreground (true) | Dice | warning |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['volume']} | {r['normalize']} | {r['foreground']:.3f} ({r['true_foreground']:.3f}) "
              f"| {r['dice']:.3f} | {'yes' if r['warned'] else 'no'} |")


if __name__ == "__main__":
    main()
