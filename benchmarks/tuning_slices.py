"""Why a tuned threshold can lose on other slices: one ISBI 2012 model's objects at several
thresholds, per slice, on the slices its training held out (those the tuning scores) and on
slices 20-29 (those ``objects.py`` scores).

The model is one ``objects.py`` trained on cell ids of slices 0-19 (its ``--out`` folder's
``models/ISBI_2012``). Objects as the tuning makes them for per-slice ids: linked, distance
seeds 3 px, min size 100, background filled; adapted Rand error per slice.

    python benchmarks/tuning_slices.py --model /tmp/napari_unet_objects/models/ISBI_2012 --data path/to/isbi2012
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA, markdown_table, write_text  # noqa: E402
from objects import ISBI_TEST, isbi_stack  # noqa: E402

from napari_unet.core import data  # noqa: E402
from napari_unet.core.bundle import load_bundle  # noqa: E402
from napari_unet.core.metrics import adapted_rand_error  # noqa: E402
from napari_unet.core.objects.maps import object_maps  # noqa: E402
from napari_unet.core.objects.streaming import label_volume  # noqa: E402
from napari_unet.core.train.objects import predict_slice  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6)


def per_slice_errors(maps, truth, threshold: float) -> np.ndarray:
    objects = label_volume(maps, mode="2d", block_slices=len(maps), halo=0, threshold=threshold, seeds="distance",
                           seed_distance=3.0, min_size=100, sampling=None, join_pieces=True)
    return np.array([adapted_rand_error(objects[k], truth[k])["error"] for k in range(len(maps))])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    stack = isbi_stack(args.data)
    model, meta = load_bundle(args.model)
    cfg = meta.train_cfg
    annotated = meta.training_data.annotated_slices
    _, val_items = data.split_slices([stack["labels"][z] for z in annotated], cfg.val_fraction, seed=cfg.seed,
                                     by=cfg.val_split)
    held_out = sorted({annotated[i] for i, _ in val_items})
    slices = held_out + list(range(ISBI_TEST.start, ISBI_TEST.stop))
    image = data.as_zyxc(stack["image"])
    norm = meta.normalization.model_dump()
    probs = np.stack([predict_slice(model, np.asarray(image[z]), norm, meta.model_cfg.size_multiple) for z in slices])
    maps = object_maps(probs, "boundary")
    maps[..., 0] = 1.0  # the cells tile the image: prediction fills the background so
    truth = stack["truth"][slices]
    rows = []
    for threshold in THRESHOLDS:
        errors = per_slice_errors(maps, truth, threshold)
        held, test = errors[:len(held_out)], errors[len(held_out):]
        rows.append([f"{threshold:g}", f"{held.mean():.3f}", " ".join(f"{e:.3f}" for e in held),
                     f"{test.mean():.3f}", " ".join(f"{e:.3f}" for e in test)])
    header = ["threshold", "held-out mean", f"held-out slices {held_out}", "slices 20-29 mean", "per slice"]
    text = f"Model {args.model}\n\n" + markdown_table(header, rows)
    print(text)
    write_text(RESULTS / "tuning_slices.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
