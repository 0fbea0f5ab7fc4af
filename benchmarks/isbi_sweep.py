"""ISBI 2012: variants of the plugin defaults under the same time budget.

Each variant changes a few ``ModelConfig`` / ``TrainConfig`` fields ("2.5-D input" also
gives each slice its two neighbours as extra channels), trains through the
engine on slices 0-19 (as in ``isbi.py``) for ``--minutes``, and is scored twice: on the
test slices 20-29 and on the annotated slices 0-19 themselves (how well the model fits
the labels it was trained on). ``--parallel 2`` trains two variants at a time with one
thread each (on 2 cores TensorFlow gains little from a second thread on these small
convolutions), so every variant gets the same share of the machine.

    python benchmarks/isbi_sweep.py --data ../shared/data/isbi2012 --minutes 10 --parallel 2

Writes ``isbi_sweep.json`` and ``isbi_sweep_table.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA, log, machine_info, markdown_table, write_json, write_text  # noqa: E402
from isbi import (  # noqa: E402
    TEST_SLICES, TRAIN_SLICES, load_isbi, partial_annotation, predict_recipe, recipes, train_recipe,
)

from napari_unet.core.config import ModelConfig, TrainConfig  # noqa: E402

# name: (ModelConfig changes, TrainConfig changes), all relative to the defaults.
VARIANTS = {
    "defaults": ({}, {}),
    "depth 4": ({"depth": 4}, {}),
    "32 filters": ({"n_filters": 32}, {}),
    "no augmentation": ({}, {"augment": False}),
    "BCE loss only": ({}, {"loss": "bce"}),
    "no validation split": ({}, {"val_fraction": 0.0}),
    "2.5-D input": ({"in_channels": 3}, {}),
}


def neighbour_channels(image: np.ndarray) -> np.ndarray:
    """``(Z, Y, X)`` -> ``(Z, Y, X, 3)``: slices z-1, z, z+1 as channels (edge slices repeat)."""
    z = np.arange(image.shape[0])
    below, above = np.clip(z - 1, 0, z[-1]), np.clip(z + 1, 0, z[-1])
    return np.stack([image[below], image, image[above]], axis=-1)


# Variants that change the input image as well as the configs.
INPUTS = {"2.5-D input": neighbour_channels}


def variant_configs(changes: tuple, minutes: float, threads: int) -> tuple[ModelConfig, TrainConfig]:
    """``isbi.py``'s "plugin defaults" recipe (the defaults with a time limit) with ``changes``."""
    model_changes, train_changes = changes
    plugin = recipes(minutes)["plugin"]
    train_cfg = dataclasses.replace(plugin["train_cfg"], threads=threads, **train_changes)
    return dataclasses.replace(plugin["model_cfg"], **model_changes), train_cfg


def run_variant(name: str, changes: tuple, image, cells, labels, out: Path, minutes: float, threads: int) -> dict:
    model_cfg, train_cfg = variant_configs(changes, minutes, threads)
    key = name.replace(" ", "_").replace(",", "")
    recipe = {"train_cfg": train_cfg, "model_cfg": model_cfg, "notes": name}
    image = INPUTS.get(name, np.asarray)(image)
    training = train_recipe(key, recipe, image, labels, out, snapshots=False)
    model_dir = training["model_dir"]
    test = predict_recipe(f"{key} test", image[TEST_SLICES], model_dir, cells[TEST_SLICES], 0, tta=False)
    fit = predict_recipe(f"{key} fit", image[TRAIN_SLICES], model_dir, cells[TRAIN_SLICES], 0, tta=False)
    return {
        "changes": {"model": changes[0], "train": changes[1]},
        "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "steps": training["steps"]["n_steps"],
        "params": training["params"],
        "best_epoch": training["best_epoch"],
        "test": test["scores"],
        "annotated": fit["scores"],
    }


def table(results: dict) -> str:
    rows = [
        [name, f"{r['params']:,}", r["steps"], f"{r['test']['membrane_dice']:.3f}",
         f"{r['test']['pixel_accuracy']:.3f}", f"{r['annotated']['membrane_dice']:.3f}"]
        for name, r in results.items()
    ]
    header = ["variant of the defaults", "weights", "steps", "test membrane Dice (20-29)",
              "test pixel accuracy", "membrane Dice on the annotated slices (0-19)"]
    return markdown_table(header, rows)


def run(data: Path, minutes: float, out: Path, parallel: int, only=None) -> dict:
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    image, cells = load_isbi(data)
    labels = partial_annotation(cells)
    threads = 1 if parallel > 1 else 0
    chosen = {k: v for k, v in VARIANTS.items() if not only or k in only}
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {
            name: pool.submit(run_variant, name, changes, image, cells, labels, out, minutes, threads)
            for name, changes in chosen.items()
        }
        results = {name: future.result() for name, future in futures.items()}
    text = table(results)
    report = {
        "benchmark": "isbi2012_sweep",
        "data": str(Path(data).absolute()),
        "minutes": minutes,
        "parallel": parallel,
        "threads_per_variant": threads or "all",
        "machine": machine_info(),
        "results": results,
        "table_markdown": text,
    }
    write_json(out / "isbi_sweep.json", report)
    write_text(out / "isbi_sweep_table.md", text + "\n")
    print("\n" + text + "\n", flush=True)
    return report


def main(argv=None) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder with train-volume.tif and train-labels.tif (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per variant (default: 10)")
    parser.add_argument("--parallel", type=int, default=2,
                        help="variants trained at a time, one thread each when above 1 (default: 2)")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), help="run only these variants")
    parser.add_argument("--out", type=Path, default=Path("bench_output"), help="output folder")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.parallel < 1:
        parser.error("--minutes must be positive and --parallel at least 1")
    start = time.perf_counter()
    run(args.data, args.minutes, args.out, args.parallel, args.only)
    log(f"ISBI sweep took {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
