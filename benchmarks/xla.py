"""XLA compilation of the training step on a CPU, with and without bfloat16: speed and objects.

Keras' ``compile(jit_compile="auto")`` leaves XLA off on a CPU-only TensorFlow, so the plugin has
never trained with it there; ``TrainConfig.xla="on"`` asks for it.

1. Training speed through the engine (``gpu.training_speed``): steps of epoch 2 (epoch 1 holds the
   compilation) at the default (automatic) sizes, float32 and bfloat16, each with XLA off and on;
   ``--repeats N`` repeats them, reversing the order each time.
2. Objects on ISBI 2012 (``objects.py``'s stack: cell ids on slices 0-19): the default model
   trained for the same time (``isbi.recipes``' plugin recipe: cosine over ``--minutes``, no early
   stopping) in float32 without XLA and in the fastest other configuration (``--accuracy all``:
   in every one), segmented through the engine as a user does (``objects.predict``: a bare TIFF,
   the object step the model tuned), scored on slices 20-29: membrane Dice and the per-slice
   adapted Rand error of the cells. Gaussian + Otsu (its cell regions, and a watershed per slice)
   in the same table.

    python benchmarks/xla.py --data ../shared/data/isbi2012 --minutes 5 --out benchmarks/results
    python benchmarks/xla.py --minutes 0.2 --steps 20 --out /tmp/xla_smoke      # a smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, fmt, log, markdown_table, write_json, write_text  # noqa: E402
from bf16 import cpu_facts  # noqa: E402
from gpu import training_speed  # noqa: E402
from isbi import recipes, train_recipe  # noqa: E402
from objects import ISBI_TEST, isbi_membrane_dice, isbi_stack, predict, score, synthetic_stack  # noqa: E402

from napari_unet.samples.baselines import choose_polarity, otsu_foreground, watershed_objects  # noqa: E402
from napari_unet.core.metrics import cell_regions, dice  # noqa: E402

# (mixed_precision, xla) as asked; the first is the plugin's default on a CPU.
CONFIGS = (("off", "off"), ("off", "on"), ("bfloat16", "off"), ("bfloat16", "on"))
DEFAULT = CONFIGS[0]
WORK = Path("/tmp/napari_unet_xla")


def label(config) -> str:
    precision, xla = config
    return f"{'bfloat16' if precision == 'bfloat16' else 'float32'}, XLA {xla}"


# ------------------------------------------------------------------ speed


def speed_rows(steps: int, repeats: int) -> list:
    """Each configuration at the automatic sizes, ``repeats`` times, the order reversed each time."""
    cells = synthetic_stack("cells")
    rows = []
    for repeat in range(repeats):
        for config in CONFIGS[::-1] if repeat % 2 else CONFIGS:
            row = training_speed(cells, None, None, config[0], steps, WORK / "speed", xla=config[1])
            row.update(config=label(config), repeat=repeat, load_avg=os.getloadavg()[0])
            log(f"train {row['batch']} x {row['patch']} px {row['precision']}, XLA {row['xla']}: "
                f"{row['patches_per_s']:.1f} patches/s (load {row['load_avg']:.1f})")
            rows.append(row)
    return rows


def mean_patches_per_s(speed: list) -> dict:
    return {config: statistics.mean(r["patches_per_s"] for r in speed if r["config"] == label(config))
            for config in CONFIGS}


def accuracy_configs(speed: list, which: str) -> list:
    """The default, and the fastest other configuration (or every one, or none)."""
    if which == "none":
        return []
    if which == "all":
        return list(CONFIGS)
    means = mean_patches_per_s(speed)
    return [DEFAULT, max((c for c in CONFIGS if c != DEFAULT), key=means.get)]


# ------------------------------------------------------------------ objects


def objects_row(stack: dict, config, minutes: float) -> dict:
    """The plugin recipe trained on the cell ids in ``config``, segmented and scored as a user's objects."""
    plugin = recipes(minutes)["plugin"]
    cfg = plugin["train_cfg"].replace(instances=True, mixed_precision=config[0], xla=config[1])
    recipe = {**plugin, "model_cfg": None, "train_cfg": cfg, "notes": f"the plugin recipe on cell ids, {label(config)}"}
    key = f"isbi_{config[0]}_xla_{config[1]}"
    training = train_recipe(key, recipe, stack["image"], stack["labels"], WORK, snapshots=False)
    training["load_avg"] = os.getloadavg()[0]
    objects, probs, timing = predict(stack, training["model_dir"])
    scores = {**score(objects, stack), "membrane_dice": isbi_membrane_dice(probs, stack)}
    log(f"{key}: membrane Dice {scores['membrane_dice']:.3f}, adapted Rand error (per slice) "
        f"{scores['adapted_rand_error']:.3f}, F1 {scores['f1']:.3f}")
    return {"config": label(config), "training": training, "prediction": timing, "scores": scores}


def baseline_rows(stack: dict) -> list:
    """Gaussian + Otsu, its polarity from the annotations: its 4-connected cell regions, and a
    distance-transform watershed per slice."""
    image, truth = stack["image"], stack["truth"]
    polarity = choose_polarity(image, stack["labels"])
    otsu = otsu_foreground(image, polarity=polarity)
    regions = {**score(cell_regions(otsu), stack),
               "membrane_dice": dice(otsu[ISBI_TEST] != 0, truth[ISBI_TEST] != 0, label=False)}
    watershed = watershed_objects(image, polarity=polarity, sampling=stack["voxel_size"], per_slice=True)
    return [{"method": "Gaussian + Otsu, cell regions", "scores": regions},
            {"method": "Gaussian + Otsu + watershed per slice", "scores": score(watershed, stack)}]


# ------------------------------------------------------------------ report


def speed_table(speed: list) -> str:
    rows = [[r["config"], r["precision"], r["xla"], f"{r['batch']} x {r['patch']}", r["patches_per_s"], r["step_ms"],
             r["seconds_to_first_batch"], 100 * r["data_wait_share"], r["load_avg"]] for r in speed]
    return markdown_table(["asked", "precision", "XLA", "batch x patch (auto)", "patches/s", "ms/step",
                           "first batch (s)", "data wait %", "load avg"], rows)


def objects_table(accuracy: list, base: list) -> str:
    rows = [[r["config"], fmt(r["training"]["trainer_s"], 0), len(r["training"]["epochs"]),
             r["training"]["steps"]["n_steps"], fmt(r["training"]["steps"]["patches_per_s"], 1),
             r["scores"]["membrane_dice"], r["scores"]["adapted_rand_error"], r["scores"]["f1"],
             r["training"]["load_avg"]] for r in accuracy]
    rows += [[b["method"], "-", "-", "-", "-", b["scores"].get("membrane_dice"), b["scores"]["adapted_rand_error"],
              b["scores"]["f1"], "-"] for b in base]
    return markdown_table(["ISBI 2012, slices 20-29", "trained (s)", "epochs", "steps", "patches/s",
                           "membrane Dice", "adapted Rand error (per slice)", "object F1", "load avg"], rows)


def report(facts: dict, speed: list, accuracy: list, base: list, minutes: float) -> str:
    text = f"CPU: {facts['cpu']}, {facts['cores']} cores, bfloat16 flags: {facts['bf16_flags'] or 'none'}\n\n"
    text += speed_table(speed) + "\n"
    if accuracy:
        text += f"\nObjects after {minutes:g} min of training each:\n\n" + objects_table(accuracy, base) + "\n"
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--minutes", type=float, default=5.0, help="training time of each ISBI run")
    parser.add_argument("--steps", type=int, default=60, help="steps per epoch of the speed runs")
    parser.add_argument("--repeats", type=int, default=1, help="speed runs of each configuration")
    parser.add_argument("--accuracy", choices=["fastest", "all", "none"], default="fastest",
                        help="ISBI runs: the default and the fastest other configuration, every one, or none")
    parser.add_argument("--tag", default="xla", help="output names: TAG.md, TAG.json")
    parser.add_argument("--out", type=Path, default=Path("bench_output"))
    args = parser.parse_args(argv)
    facts = cpu_facts()
    log(f"CPU {facts['cpu']}: bfloat16 flags {facts['bf16_flags']}")
    speed = speed_rows(args.steps, args.repeats)
    configs = accuracy_configs(speed, args.accuracy)
    stack = isbi_stack(args.data) if configs else None
    accuracy = [objects_row(stack, config, args.minutes) for config in configs]
    base = baseline_rows(stack) if configs else []
    text = report(facts, speed, accuracy, base, args.minutes)
    print(text)
    write_text(args.out / f"{args.tag}.md", text)
    write_json(args.out / f"{args.tag}.json", {"facts": facts, "training_speed": speed, "isbi_objects": accuracy,
                                              "baseline": base, "minutes": args.minutes, "steps": args.steps})
    return 0


if __name__ == "__main__":
    sys.exit(main())
