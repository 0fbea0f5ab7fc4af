"""Corrections: should the pixels a user corrected count more when training continues?

The Train dock's loop (issue "Learn from fewer annotations", part 3): Accept a predicted slice into
the annotations (``core/accept.py``), correct it, then continue from the model. Per stack and seed
(the stacks of ``annotation_efficiency.py``: ISBI 2012 scored per slice, the synthetic cells in 3-D):

1. ``--start`` random pool slices are annotated with the truth and an instance model is trained on
   them for ``--round-seconds`` (the object step tuned after training, as the product does);
2. it predicts the unannotated pool slice farthest from them and its objects are accepted into the
   annotations; the user's correction is simulated by the truth replacing them on that slice;
3. training continues from that model for the same time, three ways:
   ``no correction`` (the same slices only: the reference), ``weight 1`` (the corrected slice
   added) and ``weight W`` (the same, with loss weight ``--weight`` on the changed pixels: where the
   corrected slice's training target, background / interior / boundary, differs from that of the
   accepted prediction; ``train(..., weights=...)``).

Each model is scored as ``annotation_efficiency.py`` scores a round (its tuned object step on a
bare TIFF; adapted Rand error of the objects, membrane or foreground Dice), beside Gaussian + Otsu +
watershed in the same run. Verdict: weighting is kept only if ``weight W``'s mean adapted Rand error
beats ``weight 1``'s by more than the seeds' spread (the larger sd) on both stacks.

    python benchmarks/corrections.py --stack both --round-seconds 20 --seeds 3 --weight 3

Writes ``corrections.{md,json}`` to ``--out``.
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
import annotation_efficiency as efficiency  # noqa: E402
import objects as object_bench  # noqa: E402
from _annotation_report import PIXEL_NAMES, mean_sd, sd  # noqa: E402
from _common import log, markdown_table, write_json, write_text  # noqa: E402

from napari_unet.core.config import TrainConfig  # noqa: E402
from napari_unet.core.data import make_targets, split_slices  # noqa: E402
from napari_unet.core.metrics import object_report  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
UNCORRECTED, PLAIN = "no correction", "weight 1"


def weighted_name(weight: float) -> str:
    return f"weight {weight:g} on changed pixels"


# ------------------------------------------------------------------ one seed


def train_on(stack: dict, annotated: list, cfg: TrainConfig, out: Path, resume=None, weights=None) -> str:
    """``annotation_efficiency.train_round`` with per-pixel loss weights."""
    from napari_unet.core.events import Done
    from napari_unet.core.train.loop import train

    labels = np.zeros_like(stack["truth"])
    labels[annotated] = stack["truth"][annotated]
    *_, final = train(stack["image"], labels, model_cfg=None, train_cfg=cfg, out_dir=out, resume_from=resume,
                      overwrite=True, weights=weights)
    if not isinstance(final, Done) or not final.training.model_saved:
        raise RuntimeError(f"training did not save a model: {final}")
    return final.training.model_dir


def farthest_slice(pool: list, annotated: list) -> int:
    """The unannotated pool slice farthest from every annotated one (the lowest on a tie)."""
    free = [z for z in pool if z not in annotated]
    return max(free, key=lambda z: (min(abs(z - a) for a in annotated), -z))


def accepted_objects(model_dir: str, stack: dict, z: int) -> np.ndarray:
    """Slice ``z`` of the objects the model predicts, as Accept copies them (the cells: from the
    whole stack predicted in 3-D; ISBI: the slice alone, its objects being per slice)."""
    from napari_unet.core.bundle import load_bundle

    slices = stack["predicted"] if z in stack["predicted"] else [z]
    model, meta = load_bundle(model_dir)
    probs = efficiency.predicted_probs(model, meta, {**stack, "predicted": slices})
    fields = object_bench.user_fields(stack, model_dir, None)[0]
    return object_bench.objects_with(object_bench._maps(probs, stack, model_dir), fields)[slices.index(z)]


def changed_pixels(accepted, corrected, boundary_width: int) -> np.ndarray:
    """Where the training target (background, interior, boundary) of the corrected slice differs
    from that of the accepted prediction."""
    def classes(ids):
        return make_targets(ids, "full_slices", 3, instances=True, boundary_width=boundary_width)[0].argmax(-1)

    return classes(accepted) != classes(corrected)


def run_seed(seed: int, stack: dict, args, folder: Path) -> list:
    cfg = args.train_cfg.replace(seed=seed)
    start = sorted(int(z) for z in np.random.default_rng(seed).choice(stack["pool"], args.start, replace=False))
    base = train_on(stack, start, cfg, folder / f"base-{seed}")
    z = farthest_slice(stack["pool"], start)
    accepted, truth = accepted_objects(base, stack, z), stack["truth"][z]
    changed = changed_pixels(accepted, truth, cfg.boundary_width)
    weights = np.ones(stack["truth"].shape, np.float32)
    weights[z][changed] = args.weight
    corrected = sorted(start + [z])
    held_out = [corrected[i] for i, _ in split_slices([truth] * len(corrected), cfg.val_fraction, seed=seed)[1]]
    facts = {"stack": stack["key"], "seed": seed, "start": start, "corrected_slice": z, "val_slices": held_out,
             "changed_share": float(changed.mean()),
             "accepted_adapted_rand_error": object_report(accepted[None], truth[None], per_slice=True)[
                 "adapted_rand_error"]}
    log(f"{stack['key']} seed {seed}: start {start}, slice {z} accepted (adapted Rand "
        f"{facts['accepted_adapted_rand_error']:.4f}), {100 * facts['changed_share']:.1f} % of it corrected; "
        f"validation slice(s) with it {held_out}")
    variants = [(UNCORRECTED, start, None), (PLAIN, corrected, None), (weighted_name(args.weight), corrected, weights)]
    return [{**facts, "variant": name, **continued(stack, name, annotated, cfg, base, w, folder / f"{name}-{seed}")}
            for name, annotated, w in variants]


def continued(stack: dict, name: str, annotated: list, cfg: TrainConfig, base: str, weights, out: Path) -> dict:
    from napari_unet.core.bundle import load_bundle

    t0 = time.perf_counter()
    model_dir = train_on(stack, annotated, cfg, out, resume=base, weights=weights)
    train_s = time.perf_counter() - t0
    scores = efficiency.evaluate(*load_bundle(model_dir), model_dir, stack)
    log(f"{stack['key']} seed {cfg.seed} {name}: adapted Rand {scores['adapted_rand_error']:.4f}, "
        f"{stack['pixel_score']} {scores['pixel']:.4f}")
    return {"slices": annotated, "train_s": train_s, **scores}


def run_stack(stack: dict, args, folder: Path) -> dict:
    log(f"{stack['name']}: pool {stack['pool']}, scored {stack['scored']}")
    classical = efficiency.baseline(stack)
    log(f"{stack['key']} Gaussian + Otsu + {classical['best']}: adapted Rand {classical['adapted_rand_error']:.4f}")
    rows = [row for seed in range(args.seeds) for row in run_seed(seed, stack, args, folder / stack["key"])]
    return {"name": stack["name"], "pixel_score": stack["pixel_score"], "rows": rows, "baseline": classical}


# ------------------------------------------------------------------ report


def by_seed(rows: list, variant: str, key: str) -> dict:
    return {r["seed"]: r[key] for r in rows if r["variant"] == variant}


def verdict_of(rows: list, weighted: str) -> dict:
    """``weight W`` against ``weight 1``: the gain in adapted Rand error (positive: better), the
    spread it must beat (the larger sd) and the gain paired by seed."""
    mine, plain = by_seed(rows, weighted, "adapted_rand_error"), by_seed(rows, PLAIN, "adapted_rand_error")
    gain = float(np.mean(list(plain.values())) - np.mean(list(mine.values())))
    spread = max(sd(list(mine.values())), sd(list(plain.values())))
    paired = [plain[s] - mine[s] for s in mine]
    return {"gain": gain, "spread": spread, "beats": gain > spread, "paired_gain": float(np.mean(paired)),
            "paired_sd": sd(paired)}


def report_stack(result: dict, variants: list) -> dict:
    rows, base = result["rows"], result["baseline"]
    table = []
    for variant in variants:
        plain = by_seed(rows, PLAIN, "adapted_rand_error")
        mine = by_seed(rows, variant, "adapted_rand_error")
        paired = [plain[s] - mine[s] for s in mine]
        table.append([variant, mean_sd(list(mine.values())), mean_sd(list(by_seed(rows, variant, "pixel").values())),
                      "-" if variant == PLAIN else mean_sd(paired)])
    table.append([f"Gaussian + Otsu + {base['best']} ({base['polarity']})", f"{base['adapted_rand_error']:.4f}",
                  f"{base['pixel']:.4f}", "-"])
    first = [r for r in rows if r["variant"] == PLAIN]
    header = ["continued training", "adapted Rand error (lower is better)", PIXEL_NAMES[result["pixel_score"]],
              "weight 1's error minus this, paired by seed"]
    verdict = verdict_of(rows, variants[-1])
    lines = [f"### {result['name']}", "", markdown_table(header, table), "",
             "Per seed: " + "; ".join(
                 f"start {r['start']}, corrected slice {r['corrected_slice']} (accepted adapted Rand "
                 f"{r['accepted_adapted_rand_error']:.3f}, {100 * r['changed_share']:.1f} % of its pixels changed), "
                 f"validation {r['val_slices']}" for r in first) + ".",
             "",
             f"- {variants[-1]} against weight 1: gain {verdict['gain']:+.4f} in adapted Rand error, spread "
             f"{verdict['spread']:.4f}: {'beats' if verdict['beats'] else 'does not beat'} it."]
    return {"name": result["name"], "text": "\n".join(lines), "verdict": verdict}


def verdict_line(sections: list, weighted: str) -> str:
    beaten = [s["name"] for s in sections if s["verdict"]["beats"]]
    keep = len(beaten) == len(sections) >= 2
    return (f"**{weighted}**: beats weight 1 by more than the seeds' spread on {', '.join(beaten) or 'no stack'} "
            f"of {len(sections)} stack(s): {'keep it' if keep else 'not kept (weight 1 stays)'}.")


# ------------------------------------------------------------------ main


def planned_seconds(stacks: list, args) -> float:
    """Four trainings a seed, plus the overheads ``annotation_efficiency.py`` measured."""
    total = 0.0
    for stack in stacks:
        key = stack["key"]
        per_seed = 4 * (args.round_seconds * 1.1 + efficiency.ROUND_OVERHEAD_S[key]) + 4 * efficiency.EVALUATE_S[key]
        total += efficiency.BASELINE_S[key] + args.seeds * per_seed
    return total


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    efficiency.add_stack_arguments(parser)
    parser.add_argument("--start", type=int, default=2, help="annotated slices of the first model")
    parser.add_argument("--round-seconds", type=float, default=20.0, help="training time of each model")
    parser.add_argument("--weight", type=float, default=3.0, help="loss weight of the corrected pixels")
    args = parser.parse_args(argv)
    if args.weight < 0 or args.start < 1:
        parser.error("--weight must be non-negative and --start at least 1")
    args.train_cfg = efficiency.round_config(args)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    stacks = efficiency.available_stacks(args.stack, args.data)
    plan = planned_seconds(stacks, args)
    log(f"planned: about {plan:.0f} s ({plan / 60:.0f} min) for {', '.join(s['key'] for s in stacks)}, "
        f"{args.seeds} seeds, {args.round_seconds:g} s a training, weight {args.weight:g}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="corrections-") as tmp:
        results = {stack["key"]: run_stack(stack, args, Path(tmp)) for stack in stacks}
    elapsed = time.perf_counter() - t0
    variants = [UNCORRECTED, PLAIN, weighted_name(args.weight)]
    sections = [report_stack(result, variants) for result in results.values()]
    text = (f"Corrections ({args.round_seconds:g} s a training, {args.seeds} seeds, mean ± sd; run took "
            f"{elapsed:.0f} s, planned {plan:.0f} s)\n\n" + "\n\n".join(s["text"] for s in sections)
            + "\n\n" + verdict_line(sections, variants[-1]) + "\n")
    print(text)
    write_text(args.out / "corrections.md", text)
    write_json(args.out / "corrections.json",
               {"args": {k: str(v) for k, v in vars(args).items() if k != "train_cfg"},
                "train_config": args.train_cfg.to_dict(), "planned_s": plan, "elapsed_s": elapsed,
                "stacks": {key: {**res, "verdict": s["verdict"]} for (key, res), s in zip(results.items(), sections)}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
