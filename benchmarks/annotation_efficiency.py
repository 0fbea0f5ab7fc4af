"""Annotation efficiency: which slice to annotate next, suggested or random, on two stacks.

Stacks (``--stack isbi``, ``cells`` or ``both``):

- ``isbi``: ISBI 2012 (``--data``), cell ids per slice; pool slices 0-19, scored on 20-29
  slice by slice (the truth's membranes ignored), as in ``benchmarks/objects.py``.
- ``cells``: the built-in synthetic cells sample (32 x 256 x 256, 3-D ids, dimmer with depth;
  ``objects.synthetic_stack``); scored on every 4th slice, 2, 6, ..., 30 (the 3-D adapted Rand
  error of the objects on those 8 slices), the pool is the other 24 slices.

Per seed, ``--start`` pool slices are drawn at random and annotated with their ids (the truth
stands in for the user's correction), and an instance model is trained on them as the product
trains on ids (``TrainConfig(instances=True)``, the object step tuned after training) for
``--round-seconds``. From that shared first model each strategy adds one pool slice per round
and fine-tunes from its previous model for ``--round-seconds``, up to ``--max-slices``:

- ``random``: a random pool slice (its own generator per seed);
- ``diversity``: ``_diversity.rank_unlike_annotated``: the pool slice whose intensity and
  gradient histograms are least like any annotated slice's (the image alone, no model);
- ``coverage``: ``core.train.one_slice.spreading_slice`` over the pool's range (the slice the
  one-slice line names), the nearest pool slice to it;
- ``entropy``: ``core.predict.uncertainty.rank_slices(method="entropy")``, the Train dock's ranking;
- ``disagreement``: ``rank_slices(method="disagreement")``: disagreement of a turned pass
  at the predicted boundaries, times the distance to the annotated slices.

Every round the model predicts the stack (ISBI: its scored slices) and the product's object
step makes objects of the probabilities (the model's tuned settings, the slice spacing estimated
from the image: a bare TIFF, ``objects.py``'s user path). Scores: adapted Rand error of the
objects; membrane Dice (ISBI: class 0 of the labels) or the objects' foreground Dice (cells).
Scored the same way in the same run: a model trained on the whole pool for as long as a whole
run (one per seed), and Gaussian + Otsu + watershed (3-D and per slice, ``objects.py``).

The bar (issue "Learn from fewer annotations"): a ranking is kept only if its adapted Rand
error beats random's at every slice count after the start by more than the seeds' spread (the
larger sd), on both stacks. The loop runs the core functions in this process (the Train dock
runs the same ones in its worker): it measures learning per annotated slice, not start-up.

    python benchmarks/annotation_efficiency.py --stack both --round-seconds 20 --seeds 3 \\
        --start 2 --max-slices 6 --strategies random,disagreement,entropy

Writes ``TAG.{md,json,png}`` to ``--out`` (``--tag``, default ``annotation_efficiency``).
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
import objects as object_bench  # noqa: E402
from _annotation_report import report_stack, plot, verdict_line  # noqa: E402
from _common import DEFAULT_DATA, log, write_json, write_text  # noqa: E402
from _diversity import rank_unlike_annotated  # noqa: E402

from napari_unet.core.config import PredictConfig, TrainConfig  # noqa: E402
from napari_unet.core.metrics import dice  # noqa: E402
from napari_unet.core.predict.postprocess import labels_from_probs  # noqa: E402
from napari_unet.core.predict.uncertainty import METHODS, SliceSubset, rank_slices  # noqa: E402
from napari_unet.core.train.one_slice import spreading_slice  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
STRATEGIES = ("random", "diversity", "coverage") + METHODS
CELLS_SCORED = list(range(2, 32, 4))
# Seconds per step besides training, measured on 2 shared CPU cores (the smoke run): the printed
# plan adds them. A training round takes its time cap plus model build and the object tuning.
ROUND_OVERHEAD_S = {"isbi": 9.0, "cells": 5.0}
EVALUATE_S = {"isbi": 13.0, "cells": 10.0}
RANK_LOAD_S = 2.0  # loading the model again for the ranking
RANK_PASS_S = {"isbi": 7.0, "cells": 2.0}  # one prediction pass over the pool slices
BASELINE_S = {"isbi": 30.0, "cells": 6.0}


# ------------------------------------------------------------------ stacks


def isbi_stack(data: Path) -> dict:
    stack = object_bench.isbi_stack(data)
    train, test = object_bench.ISBI_TRAIN, object_bench.ISBI_TEST
    return {**stack, "key": "isbi", "pool": list(range(train.start, train.stop)),
            "scored": list(range(test.start, test.stop)), "predicted": list(range(test.start, test.stop)),
            "pixel_score": "membrane_dice", "score": test}


def cells_stack() -> dict:
    stack = object_bench.synthetic_stack("cells")
    truth = stack["truth"]
    pool = [z for z in range(truth.shape[0]) if z not in CELLS_SCORED]
    labels = np.zeros_like(truth)
    labels[pool] = truth[pool]  # the baseline takes its polarity from the pool's annotations
    return {**stack, "key": "cells", "labels": labels, "pool": pool, "scored": CELLS_SCORED,
            "predicted": list(range(truth.shape[0])), "pixel_score": "foreground_dice", "score": CELLS_SCORED}


def load_stacks(which: str, data: Path) -> list[dict]:
    keys = ["isbi", "cells"] if which == "both" else [which]
    return [isbi_stack(data) if key == "isbi" else cells_stack() for key in keys]


def available_stacks(which: str, data: Path) -> list[dict]:
    """``load_stacks``; ISBI 2012 skipped (said once) where its files are absent."""
    if which != "cells" and not (data / "train-volume.tif").exists():
        log(f"ISBI 2012 not found in {data}: skipped")
        if which == "isbi":
            return []
        which = "cells"
    return load_stacks(which, data)


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every few-annotation benchmark takes: stacks, data, seeds, steps, output."""
    parser.add_argument("--stack", choices=("isbi", "cells", "both"), default="both")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ISBI 2012 folder (train-*.tif)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=TrainConfig().steps_per_epoch,
                        help="the product's by default; fewer for smoke runs with short rounds")
    parser.add_argument("--out", type=Path, default=RESULTS)


def round_config(args) -> TrainConfig:
    """An instance model trained for ``--round-seconds``, no early stopping: rounds of equal length."""
    return TrainConfig(instances=True, max_seconds=args.round_seconds, early_stopping_patience=0,
                       steps_per_epoch=args.steps_per_epoch)


# ------------------------------------------------------------------ one round


def train_round(stack: dict, annotated: list, cfg: TrainConfig, out: Path, resume=None) -> str:
    from napari_unet.core.events import Done
    from napari_unet.core.train.loop import train

    labels = np.zeros_like(stack["truth"])
    labels[annotated] = stack["truth"][annotated]
    *_, final = train(stack["image"], labels, model_cfg=None, train_cfg=cfg, out_dir=out, resume_from=resume,
                      overwrite=True)
    if not isinstance(final, Done) or not final.training.model_saved:
        raise RuntimeError(f"training did not save a model: {final}")
    return final.training.model_dir


def predicted_probs(model, meta, stack: dict) -> np.ndarray:
    """All classes of the predicted slices, as prediction gives them (the volume's own intensities)."""
    from napari_unet.core.predict.volume import bundle_predictor

    subset = SliceSubset(stack["image"], stack["predicted"])
    probs = np.zeros(subset.shape + (3,), np.float32)
    for _ in bundle_predictor(model, meta, cfg=PredictConfig())(subset, out_probs=probs):
        pass
    return probs


def evaluate(model, meta, model_dir: str, stack: dict) -> dict:
    """Objects from the model's probabilities with the object step prediction takes, scored."""
    probs = predicted_probs(model, meta, stack)
    fields = object_bench.user_fields(stack, model_dir, None)[0]
    found = object_bench.objects_with(object_bench._maps(probs, stack, model_dir), fields)
    objects = np.zeros(stack["truth"].shape, np.uint32)
    objects[stack["predicted"]] = found
    report = object_bench.score(objects, stack)
    scored = [stack["predicted"].index(z) for z in stack["scored"]]
    membranes = labels_from_probs(probs[scored]) == 0
    report["membrane_dice"] = dice(membranes, stack["truth"][stack["scored"]] == 0, label=True)
    report["pixel"] = report[stack["pixel_score"]]
    return {key: report[key] for key in ("adapted_rand_error", "rand_split_score", "rand_merge_score", "f1",
                                        "foreground_dice", "membrane_dice", "pixel")}


def next_slice(strategy: str, model, meta, stack: dict, annotated: list, rng) -> int:
    """The pool slice ``strategy`` adds next."""
    from napari_unet.core.predict.volume import bundle_predictor

    pool = [z for z in stack["pool"] if z not in annotated]
    if strategy == "random":
        return int(rng.choice(pool))
    if strategy == "diversity":  # the image alone: the pool slice least like the annotated ones
        return rank_unlike_annotated(stack["image"], pool, annotated)[0][0]
    if strategy == "coverage":  # the one-slice line's pick, over the pool's range: no model
        target = spreading_slice(annotated, max(stack["pool"]) + 1)
        return min(pool, key=lambda z: (abs(z - target), z))
    # As the dock's ranking job predicts: the training image's intensity mapping.
    predict = bundle_predictor(model, meta, cfg=PredictConfig(normalize="model"))
    *_, ranked = rank_slices(stack["image"], pool, predict=predict, n_classes=meta.model_cfg.n_classes, method=strategy,
                             annotated=annotated)
    return int(ranked.ranking[0][0])


# ------------------------------------------------------------------ runs


def scored_round(stack: dict, strategy: str, seed: int, annotated: list, model_dir: str, train_s: float) -> dict:
    from napari_unet.core.bundle import load_bundle

    model, meta = load_bundle(model_dir)
    row = {"stack": stack["key"], "strategy": strategy, "seed": seed, "n_annotated": len(annotated),
           "slices": list(annotated), "train_s": train_s, **evaluate(model, meta, model_dir, stack)}
    log(f"{stack['key']} {strategy} seed {seed}: {len(annotated)} slices {annotated} -> adapted Rand "
        f"{row['adapted_rand_error']:.4f}, {stack['pixel_score']} {row['pixel']:.4f}")
    return row


def run_strategy(strategy: str, seed: int, stack: dict, first: dict, args, folder: Path) -> list:
    """Rounds from the shared first model (``first``: its row and folder) up to ``--max-slices``."""
    from napari_unet.core.bundle import load_bundle

    rng = np.random.default_rng([seed, 1])  # the same random picks whatever other strategies run
    annotated, model_dir = list(first["row"]["slices"]), first["model_dir"]
    rows = [{**first["row"], "strategy": strategy}]
    while len(annotated) < args.max_slices:
        t0 = time.perf_counter()
        annotated.append(next_slice(strategy, *load_bundle(model_dir), stack, annotated, rng))
        rank_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model_dir = train_round(stack, annotated, args.train_cfg.replace(seed=seed),
                                folder / f"{strategy}-{seed}-{len(annotated)}", resume=model_dir)
        rows.append({**scored_round(stack, strategy, seed, annotated, model_dir, time.perf_counter() - t0),
                     "rank_s": rank_s})
    return rows


def run_seed(seed: int, stack: dict, args, folder: Path) -> tuple[list, dict]:
    """Every strategy from one shared start, and the whole-pool reference, for one seed."""
    start = sorted(int(z) for z in np.random.default_rng(seed).choice(stack["pool"], args.start, replace=False))
    t0 = time.perf_counter()
    model_dir = train_round(stack, start, args.train_cfg.replace(seed=seed), folder / f"start-{seed}")
    first = {"model_dir": model_dir,
             "row": scored_round(stack, "start", seed, start, model_dir, time.perf_counter() - t0)}
    rows = [row for strategy in args.strategies for row in run_strategy(strategy, seed, stack, first, args, folder)]
    return rows, reference(seed, stack, args, folder)


def reference(seed: int, stack: dict, args, folder: Path) -> dict:
    """The whole pool, trained from scratch for as long as a whole run of rounds."""
    seconds = args.round_seconds * (args.max_slices - args.start + 1)
    t0 = time.perf_counter()
    model_dir = train_round(stack, stack["pool"], args.train_cfg.replace(seed=seed, max_seconds=seconds),
                            folder / f"reference-{seed}")
    return scored_round(stack, "all pool slices", seed, stack["pool"], model_dir, time.perf_counter() - t0)


def baseline(stack: dict) -> dict:
    """Gaussian + Otsu + watershed (``objects.py``), and Otsu's pixel score, on the scored slices."""
    from napari_unet.samples.baselines import otsu_foreground

    scores = object_bench.baseline_scores(stack)
    otsu = otsu_foreground(stack["image"][stack["scored"]], polarity=scores["polarity"])
    truth = stack["truth"][stack["scored"]]
    pixel = dice(otsu == 0, truth == 0, label=True) if stack["pixel_score"] == "membrane_dice" \
        else scores["otsu_foreground_dice"]
    best = min(("watershed 3-D", "watershed per slice"), key=lambda k: scores[k]["adapted_rand_error"])
    return {"polarity": scores["polarity"], "pixel": pixel, "best": best,
            "adapted_rand_error": scores[best]["adapted_rand_error"],
            **{key: scores[key] for key in ("watershed 3-D", "watershed per slice")}}


def run_stack(stack: dict, args, folder: Path) -> dict:
    log(f"{stack['name']}: pool {stack['pool']}, scored {stack['scored']}")
    classical = baseline(stack)
    log(f"{stack['key']} Gaussian + Otsu + {classical['best']}: adapted Rand {classical['adapted_rand_error']:.4f}")
    rows, references = [], []
    for seed in range(args.seeds):
        seed_rows, ref = run_seed(seed, stack, args, folder / stack["key"])
        rows += seed_rows
        references.append(ref)
    return {"name": stack["name"], "pool": stack["pool"], "scored": stack["scored"],
            "pixel_score": stack["pixel_score"], "rounds": rows, "reference": references, "baseline": classical}


# ------------------------------------------------------------------ plan and main


def planned_seconds(stacks: list, args) -> float:
    """Training time caps, plus the overheads measured on 2 shared CPU cores."""
    added = args.max_slices - args.start
    suggesting = [s for s in args.strategies if s in METHODS]  # the rankings that load and run the model
    total = 0.0
    for stack in stacks:
        key = stack["key"]
        trainings = 1 + len(args.strategies) * added + 1
        seconds = args.round_seconds * (1 + len(args.strategies) * added + added + 1)
        passes = sum(2 if s == "disagreement" else 1 for s in suggesting) * added
        per_seed = (seconds * 1.1 + trainings * (ROUND_OVERHEAD_S[key] + EVALUATE_S[key])
                    + len(suggesting) * added * RANK_LOAD_S + passes * RANK_PASS_S[key])
        total += BASELINE_S[key] + args.seeds * per_seed
    return total


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_stack_arguments(parser)
    parser.add_argument("--strategies", default="random,disagreement,entropy",
                        help=f"comma-separated, of {', '.join(STRATEGIES)}")
    parser.add_argument("--start", type=int, default=2, help="annotated slices in the first round")
    parser.add_argument("--max-slices", type=int, default=6, help="stop after this many annotated slices")
    parser.add_argument("--round-seconds", type=float, default=20.0, help="training time per round")
    parser.add_argument("--tag", default="annotation_efficiency", help="output names: TAG.md, TAG.json, TAG.png")
    args = parser.parse_args(argv)
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(args.strategies) - set(STRATEGIES))
    if unknown or "random" not in args.strategies:
        parser.error(f"--strategies must include random and name only {', '.join(STRATEGIES)}; got {unknown}")
    if not 1 <= args.start < args.max_slices:
        parser.error("--start must be at least 1 and below --max-slices")
    args.train_cfg = round_config(args)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    stacks = load_stacks(args.stack, args.data)
    plan = planned_seconds(stacks, args)
    log(f"planned: about {plan:.0f} s ({plan / 60:.0f} min) for {', '.join(s['key'] for s in stacks)}, "
        f"{args.seeds} seeds, {args.start}-{args.max_slices} slices, {args.round_seconds:g} s a round, "
        f"strategies {', '.join(args.strategies)}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="annotation-efficiency-") as tmp:
        results = {stack["key"]: run_stack(stack, args, Path(tmp)) for stack in stacks}
    elapsed = time.perf_counter() - t0
    sections = [report_stack(res, args.strategies, args.start) for res in results.values()]
    text = (f"Annotation efficiency ({args.round_seconds:g} s a round, {args.seeds} seeds, mean ± sd; "
            f"run took {elapsed:.0f} s, planned {plan:.0f} s)\n\n" + "\n\n".join(s["text"] for s in sections)
            + "\n\n" + verdict_line(sections) + "\n")
    print(text)
    write_text(args.out / f"{args.tag}.md", text)
    write_json(args.out / f"{args.tag}.json",
               {"args": {k: str(v) for k, v in vars(args).items() if k != "train_cfg"},
                "train_config": args.train_cfg.to_dict(), "planned_s": plan, "elapsed_s": elapsed,
                "stacks": {key: {**res, "verdict": s["verdict"]} for (key, res), s in zip(results.items(), sections)}})
    plot(results, args.strategies, args.out / f"{args.tag}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
