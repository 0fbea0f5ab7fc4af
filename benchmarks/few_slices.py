"""Few annotated slices: training variants compared on the same picks, in the same run.

Per stack (``annotation_efficiency.py``'s ISBI 2012 and synthetic cells, scored the same way:
objects by adapted Rand error with the model's tuned object step, pixels by Dice) and per
seed, ``--slices`` pool slices are drawn (the same draw as annotation_efficiency's first
round) and an instance model is trained on their ids with each arm's settings, for
``--seconds`` at most (the product's defaults otherwise, early stopping included). Beside
them, in the same run: the whole pool trained as long (the all-slices reference) and
Gaussian + Otsu + watershed.

Arms (``--arms``, the first is the one the others are measured against):

- ``slices``: the defaults: whole slices held out for validation (1 of 2);
- ``strips``: ``val_split="strips"``: a strip of each slice held out, so both slices teach;
- ``pretrain``: ``pretrain_share=0.25``: self-supervised pretraining on every slice first;
- ``pseudo`` was measured with commit 70f4e26 (``TrainConfig(unannotated="pseudo")``) and
  ``consistency`` with commit bfc0219 (``TrainConfig(consistency_weight=0.5)``); both were
  removed from the code: not kept, docs/benchmarks.md;
- further arms are ``ARMS`` entries: a name and the ``TrainConfig`` fields it changes.

An arm "beats" the first when its mean adapted Rand error is lower by more than the larger
of the two spreads (sample sd over the seeds), on every stack.

    python benchmarks/few_slices.py --stack both --seeds 3 --slices 2 --seconds 60

Writes ``few_slices_<arms>.{md,json}`` (or ``--tag``'s names) to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _annotation_report import mean_sd, sd  # noqa: E402
from _common import markdown_table, write_json, write_text  # noqa: E402
from annotation_efficiency import add_stack_arguments, available_stacks, baseline, scored_round, train_round  # noqa: E402

from napari_unet.core.config import TrainConfig  # noqa: E402

ARMS = {
    "slices": {},
    "strips": {"val_split": "strips"},
    # Masked reconstruction on every slice for a quarter of the time cap, then the annotations.
    "pretrain": {"pretrain_share": 0.25},
}


def run_seed(stack: dict, seed: int, args, folder: Path) -> list:
    picks = sorted(int(z) for z in np.random.default_rng(seed).choice(stack["pool"], args.slices, replace=False))
    rows = []
    for arm in [*args.arms, "all pool slices"]:
        annotated = stack["pool"] if arm not in ARMS else picks
        cfg = args.train_cfg.replace(seed=seed, **ARMS.get(arm, {}))
        t0 = time.perf_counter()
        model_dir = train_round(stack, annotated, cfg, folder / f"{arm}-{seed}")
        rows.append(scored_round(stack, arm, seed, annotated, model_dir, time.perf_counter() - t0))
    return rows


def arm_row(rows: list, arm: str, first: str, reference: float) -> list:
    mine = {r["seed"]: r for r in rows if r["strategy"] == arm}
    base = {r["seed"]: r for r in rows if r["strategy"] == first}
    errors = [r["adapted_rand_error"] for r in mine.values()]
    paired = [base[s]["adapted_rand_error"] - mine[s]["adapted_rand_error"] for s in mine if s in base]
    return [arm, len(next(iter(mine.values()))["slices"]), mean_sd(errors), f"{np.mean(errors) / reference:.2f}",
            mean_sd([r["pixel"] for r in mine.values()]), mean_sd(paired) if arm != first else "-"]


def beats(rows: list, arm: str, first: str) -> bool:
    mine = [r["adapted_rand_error"] for r in rows if r["strategy"] == arm]
    base = [r["adapted_rand_error"] for r in rows if r["strategy"] == first]
    return np.mean(base) - np.mean(mine) > max(sd(mine), sd(base))


def report(stack: dict, rows: list, classical: dict, args) -> str:
    reference = float(np.mean([r["adapted_rand_error"] for r in rows if r["strategy"] == "all pool slices"]))
    table = [arm_row(rows, arm, args.arms[0], reference) for arm in [*args.arms, "all pool slices"]]
    table.append([f"Gaussian + Otsu + {classical['best']}", "-", f"{classical['adapted_rand_error']:.4f}",
                  f"{classical['adapted_rand_error'] / reference:.2f}", f"{classical['pixel']:.4f}", "-"])
    header = ["arm", "annotated slices", "adapted Rand error", "x all-slices error",
              stack["pixel_score"].replace("_", " "), f"{args.arms[0]}'s error minus this, by seed"]
    return f"### {stack['name']}\n\n" + markdown_table(header, table)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_stack_arguments(parser)
    parser.add_argument("--arms", default="slices,strips", help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--slices", type=int, default=2, help="annotated slices")
    parser.add_argument("--seconds", type=float, default=60.0, help="time cap of each training")
    parser.add_argument("--tag", default=None, help="output names: TAG.md, TAG.json (default: few_slices_<arms>)")
    args = parser.parse_args(argv)
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not args.arms or set(args.arms) - set(ARMS):
        parser.error(f"--arms: name some of {', '.join(ARMS)}")
    args.train_cfg = TrainConfig(instances=True, max_seconds=args.seconds, steps_per_epoch=args.steps_per_epoch)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    sections, verdicts, results = [], [], {}
    with tempfile.TemporaryDirectory(prefix="few-slices-") as tmp:
        for stack in available_stacks(args.stack, args.data):
            classical = baseline(stack)
            rows = [row for seed in range(args.seeds) for row in run_seed(stack, seed, args, Path(tmp) / stack["key"])]
            sections.append(report(stack, rows, classical, args))
            verdicts.append({arm: beats(rows, arm, args.arms[0]) for arm in args.arms[1:]})
            results[stack["key"]] = {"rounds": rows, "baseline": classical}
    elapsed = time.perf_counter() - t0
    lines = [f"- **{arm}** beats {args.arms[0]} beyond the seeds' spread on "
             f"{sum(v[arm] for v in verdicts)} of {len(verdicts)} stack(s)." for arm in args.arms[1:]]
    text = (f"Few annotated slices ({args.slices} slices, at most {args.seconds:g} s a training, {args.seeds} "
            f"seeds, mean ± sd; run took {elapsed:.0f} s)\n\n" + "\n\n".join(sections) + "\n\n" + "\n".join(lines) + "\n")
    print(text)
    stem = args.tag or "few_slices_" + "_".join(args.arms)
    write_text(args.out / f"{stem}.md", text)
    write_json(args.out / f"{stem}.json", {"args": {k: str(v) for k, v in vars(args).items() if k != "train_cfg"},
                                              "train_config": args.train_cfg.to_dict(), "elapsed_s": elapsed,
                                              "stacks": results, "verdicts": verdicts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
