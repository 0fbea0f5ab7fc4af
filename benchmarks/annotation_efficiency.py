"""Annotation efficiency on ISBI 2012: suggested versus random slices to annotate next.

Slices 0-19 are the pool, 20-29 are scored. Each run starts from ``--start`` annotated slices
(chosen at random, per seed), trains for ``--round-seconds``, then adds one slice per round,
the most uncertain one (``core.uncertainty``, as the Train dock suggests) or a random one, with
the truth standing in for the user's correction, and fine-tunes from the previous model for
``--round-seconds`` again. Every round is scored on the test slices (membrane Dice, adapted
Rand error of the cells), and a model trained on all 20 slices for as long as a whole run gives
the reference for "slices needed to reach 90 % of the 20-slice score".

The loop runs the core functions in this process (the Train dock runs the same ones in its
worker): it measures how fast the model learns per annotated slice, not start-up times.

    python benchmarks/annotation_efficiency.py --data ../shared/data/isbi2012
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import log, markdown_table, write_json, write_text  # noqa: E402
from isbi import TEST_SLICES, TRAIN_SLICES, load_isbi  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
STRATEGIES = ("suggested", "random")


def train_round(image, labels, out: Path, seconds: float, resume=None, seed: int = 0) -> str:
    from napari_unet.core.config import TrainConfig
    from napari_unet.core.events import Done
    from napari_unet.core.train import train

    cfg = TrainConfig(max_seconds=seconds, early_stopping_patience=0, seed=seed)
    *_, final = train(image, labels, None, cfg, out, resume_from=resume, overwrite=True)
    if not isinstance(final, Done) or not final.training.model_saved:
        raise RuntimeError(f"training did not save a model: {final}")
    return final.training.model_dir


def _predictor(model_dir: str, normalize: str = "volume"):
    from napari_unet.core.bundle import load_bundle, model_config_of
    from napari_unet.core.config import PredictConfig
    from napari_unet.core.predict import bundle_predictor

    model, meta = load_bundle(model_dir)
    return model_config_of(meta).n_classes, bundle_predictor(model, meta, PredictConfig(normalize=normalize))


def score(model_dir: str, image, cells) -> dict:
    from napari_unet.core.metrics import evaluate_membrane

    _, predict = _predictor(model_dir)
    *_, done = predict(image[TEST_SLICES])
    scores = evaluate_membrane(done.outputs["labels"] != 0, cells[TEST_SLICES])
    return {key: scores[key] for key in ("membrane_dice", "adapted_rand_error")}


def suggest(model_dir: str, image, annotated: list) -> int:
    from napari_unet.core.uncertainty import rank_slices

    n_classes, predict = _predictor(model_dir, normalize="model")  # as the dock's ranking job
    pool = [z for z in range(TRAIN_SLICES.stop) if z not in annotated]
    *_, ranked = rank_slices(image, pool, predict, n_classes)
    return int(ranked.ranking[0][0])


def run_strategy(strategy: str, seed: int, image, cells, args, folder: Path) -> list:
    rng = np.random.default_rng(seed)
    annotated = [int(z) for z in rng.choice(TRAIN_SLICES.stop, args.start, replace=False)]
    labels = np.zeros(image.shape, np.uint8)
    labels[annotated] = cells[annotated]
    model, rows = None, []
    while True:
        t0 = time.perf_counter()
        model = train_round(image, labels, folder / f"{strategy}-{seed}-{len(annotated)}", args.round_seconds,
                            resume=model, seed=seed)
        rows.append({"strategy": strategy, "seed": seed, "n_annotated": len(annotated),
                     "slices": list(annotated), **score(model, image, cells), "train_s": time.perf_counter() - t0})
        log(f"{strategy} seed {seed}: {len(annotated)} slices -> membrane Dice {rows[-1]['membrane_dice']:.4f}, "
            f"adapted Rand {rows[-1]['adapted_rand_error']:.4f}")
        if len(annotated) >= args.max_slices:
            return rows
        pool = [z for z in range(TRAIN_SLICES.stop) if z not in annotated]
        nxt = suggest(model, image, annotated) if strategy == "suggested" else int(rng.choice(pool))
        annotated.append(nxt)
        labels[nxt] = cells[nxt]


def reference(image, cells, args, folder: Path) -> dict:
    """All 20 slices, trained as long as a whole run of rounds."""
    labels = np.zeros(image.shape, np.uint8)
    labels[TRAIN_SLICES] = cells[TRAIN_SLICES]
    seconds = args.round_seconds * (args.max_slices - args.start + 1)
    model = train_round(image, labels, folder / "all20", seconds)
    result = {"n_annotated": 20, "train_s": seconds, **score(model, image, cells)}
    log(f"reference, 20 slices for {seconds:.0f} s: membrane Dice {result['membrane_dice']:.4f}, "
        f"adapted Rand {result['adapted_rand_error']:.4f}")
    return result


def baseline(image, cells) -> dict:
    """Gaussian + Otsu on the scored slices, its polarity chosen on the pool's truth: the classical
    reference, scored the same way."""
    from napari_unet.core.baselines import choose_polarity, otsu_foreground
    from napari_unet.core.metrics import evaluate_membrane

    polarity = choose_polarity(image[TRAIN_SLICES], cells[TRAIN_SLICES])
    scores = evaluate_membrane(otsu_foreground(image[TEST_SLICES], polarity=polarity), cells[TEST_SLICES])
    return {"polarity": polarity, **{key: scores[key] for key in ("membrane_dice", "adapted_rand_error")}}


def summary(rows: list, ref: dict) -> tuple[list, dict]:
    """Mean (and spread) per strategy and slice count, and the slices each needs for 90 % of the reference."""
    table, reached = [], {}
    # 90 % of the reference: 0.9 x its Dice, and an error at most its error / 0.9.
    targets = {"membrane_dice": lambda v: v >= 0.9 * ref["membrane_dice"],
               "adapted_rand_error": lambda v: v <= ref["adapted_rand_error"] / 0.9}
    for strategy in STRATEGIES:
        counts = sorted({r["n_annotated"] for r in rows if r["strategy"] == strategy})
        for n in counts:
            sel = [r for r in rows if r["strategy"] == strategy and r["n_annotated"] == n]
            dice = [r["membrane_dice"] for r in sel]
            rand = [r["adapted_rand_error"] for r in sel]
            table.append([strategy, n, f"{np.mean(dice):.4f} ± {np.std(dice):.4f}",
                          f"{np.mean(rand):.4f} ± {np.std(rand):.4f}"])
            for key, values in (("membrane_dice", dice), ("adapted_rand_error", rand)):
                if (strategy, key) not in reached and targets[key](np.mean(values)):
                    reached[strategy, key] = n
    return table, reached


def plot(rows: list, ref: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, name in zip(axes, ("membrane_dice", "adapted_rand_error"), ("membrane Dice", "adapted Rand error")):
        for strategy in STRATEGIES:
            counts = sorted({r["n_annotated"] for r in rows if r["strategy"] == strategy})
            values = [[r[key] for r in rows if r["strategy"] == strategy and r["n_annotated"] == n] for n in counts]
            ax.errorbar(counts, [np.mean(v) for v in values], yerr=[np.std(v) for v in values], marker="o",
                        capsize=3, label=strategy)
        ax.axhline(ref[key], color="grey", linestyle="--", label="all 20 slices")
        ax.set_xlabel("annotated slices")
        ax.set_title(name)
    axes[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train-volume.tif and train-labels.tif")
    parser.add_argument("--start", type=int, default=2, help="annotated slices in the first round")
    parser.add_argument("--max-slices", type=int, default=8, help="stop after this many annotated slices")
    parser.add_argument("--round-seconds", type=float, default=20.0, help="training time per round")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    image, cells = load_isbi(args.data)
    cells = cells.astype(np.uint8)
    with tempfile.TemporaryDirectory(prefix="annotation-efficiency-") as tmp:
        rows = [row for seed in range(args.seeds) for strategy in STRATEGIES
                for row in run_strategy(strategy, seed, image, cells, args, Path(tmp))]
        ref = reference(image, cells, args, Path(tmp))
    classical = baseline(image, cells)
    table, reached = summary(rows, ref)
    text = (f"Annotation efficiency on ISBI 2012 (pool 0-19, scored on 20-29; {args.round_seconds:g} s a round, "
            f"{args.seeds} seeds, mean ± sd)\n\n"
            + markdown_table(["picks", "annotated slices", "membrane Dice", "cells' adapted Rand error"], table)
            + f"\n\nReference, all 20 slices ({ref['train_s']:.0f} s): membrane Dice {ref['membrane_dice']:.4f}, "
              f"adapted Rand error {ref['adapted_rand_error']:.4f}. Slices needed for 90 % of its score "
              "(Dice; adapted Rand error): "
            + ", ".join(f"{s} " + "; ".join(str(reached.get((s, key), f"more than {args.max_slices}"))
                                           for key in ("membrane_dice", "adapted_rand_error"))
                        for s in STRATEGIES)
            + f". Gaussian + Otsu ({classical['polarity']}) on the same slices: membrane Dice "
              f"{classical['membrane_dice']:.4f}, adapted Rand error {classical['adapted_rand_error']:.4f}.\n")
    print(text)
    write_json(args.out / "annotation_efficiency.json", {"args": {k: str(v) for k, v in vars(args).items()},
                                                         "rounds": rows, "reference": ref, "baseline": classical,
                                                         "reached_90": {f"{s} {k}": n for (s, k), n in reached.items()}})
    write_text(args.out / "annotation_efficiency.md", text)
    plot(rows, ref, args.out / "annotation_efficiency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
