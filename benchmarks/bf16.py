"""bfloat16 on a CPU that has it (AVX512_BF16 / AMX): speed and accuracy against float32.

1. Training speed through the engine (``gpu.training_speed``): steps of epoch 2, at 8 x 256 px and
   at the default (automatic) sizes, ``mixed_precision`` "off" against "bfloat16".
2. Prediction speed: ``predict_on_batch`` of the default U-Net built under "float32" and under
   "mixed_bfloat16", on 4 tiles of 512 x 512 (the prediction defaults), in a helper process.
3. Accuracy on ISBI 2012 (``isbi.py``'s split, loading and scoring): the default model trained for
   the same time with each precision (``isbi.recipes``' plugin recipe), segmented through the
   engine (float32, as the plugin predicts), membrane Dice on slices 20-29; the Gaussian + Otsu
   baseline (``annotation_efficiency.baseline``) in the same table.

    python benchmarks/bf16.py --data ../shared/data/isbi2012 --minutes 4 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, fmt, keras_helper, log, markdown_table, write_json, write_text  # noqa: E402
from annotation_efficiency import baseline  # noqa: E402
from gpu import training_speed  # noqa: E402
from isbi import TEST_SLICES, load_isbi, partial_annotation, predict_recipe, recipes, train_recipe  # noqa: E402
from objects import synthetic_stack  # noqa: E402

from napari_unet.core.nn.devices import cpu_bf16_flags  # noqa: E402

PRECISIONS = ("off", "bfloat16")
SPEED_SIZES = ((8, 256, 12), (None, None, 60))  # (batch, patch, steps per epoch); None: automatic


def cpu_facts() -> dict:
    text = Path("/proc/cpuinfo").read_text(errors="replace")
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    return {"cpu": model, "bf16_flags": cpu_bf16_flags(text), "cores": len(os.sched_getaffinity(0))}


def speed_rows(out: Path, repeats: int = 1) -> list:
    """Each size in each precision, ``repeats`` times, the order of the precisions swapped each time."""
    cells = synthetic_stack("cells")
    rows = []
    for repeat, (batch, patch, steps) in ((r, size) for r in range(repeats) for size in SPEED_SIZES):
        for precision in PRECISIONS[::-1] if repeat % 2 else PRECISIONS:
            row = training_speed(cells, batch, patch, precision, steps, out / "speed")
            row["load_avg"] = os.getloadavg()[0]
            log(f"train {row['batch']} x {row['patch']} px {row['precision']}: {row['patches_per_s']:.1f} patches/s "
                f"(load {row['load_avg']:.1f})")
            row["repeat"] = repeat
            rows.append(row)
    return rows


def predict_rows() -> list:
    import _keras_tasks as tasks

    rows = []
    with keras_helper() as helper:
        for policy in ("float32", "mixed_bfloat16"):
            rows.append(helper.submit(tasks.policy_predict_speed, policy, 4, 512).result())
            log(f"predict 4 x 512 px {policy}: {rows[-1]['patches_per_s']:.2f} patches/s")
    return rows


def accuracy_rows(data: Path, minutes: float, out: Path) -> tuple[list, dict]:
    image, cells = load_isbi(data)
    labels, truth = partial_annotation(cells), cells[TEST_SLICES]
    rows = []
    for precision in PRECISIONS:
        recipe = recipes(minutes)["plugin"]
        recipe = {**recipe, "train_cfg": recipe["train_cfg"].replace(mixed_precision=precision)}
        key = f"isbi_{precision}"
        training = train_recipe(key, recipe, image, labels, out, snapshots=False)
        training["load_avg"] = os.getloadavg()[0]
        prediction = predict_recipe(key, image, training["model_dir"], truth, TEST_SLICES.start, tta=False)
        rows.append({"precision": training["precision"], "training": training, "prediction": prediction})
    return rows, baseline(image, cells)


def report(facts, speed, predict, accuracy, base) -> str:
    text = f"CPU: {facts['cpu']}, {facts['cores']} cores, bfloat16 flags: {facts['bf16_flags'] or 'none'}\n\n"
    text += markdown_table(["batch", "patch", "precision", "patches/s", "ms/step", "data wait %", "load avg"],
                           [[r["batch"], r["patch"], r["precision"], r["patches_per_s"], r["step_ms"],
                             100 * r["data_wait_share"], r["load_avg"]] for r in speed])
    text += "\n\n" + markdown_table(["prediction", "tiles", "patches/s", "first call (s)"],
                                    [[r["policy"], f"{r['batch']} x {r['size']} px", r["patches_per_s"],
                                      r["first_call_s"]] for r in predict])
    rows = [[r["precision"], fmt(r["training"]["trainer_s"], 0), len(r["training"]["epochs"]),
             r["training"]["steps"]["n_steps"], fmt(r["training"]["steps"]["patches_per_s"], 1),
             r["prediction"]["scores"]["membrane_dice"], r["prediction"]["scores"]["adapted_rand_error"]]
            for r in accuracy]
    if not rows:
        return text + "\n"
    rows.append(["Gaussian + Otsu baseline", "-", "-", "-", "-", base["membrane_dice"], base["adapted_rand_error"]])
    text += "\n\n" + markdown_table(["ISBI 2012, slices 20-29", "trained (s)", "epochs", "steps", "patches/s",
                                     "membrane Dice", "adapted Rand error"], rows)
    return text + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--minutes", type=float, default=4.0, help="training time of each ISBI run")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--repeats", type=int, default=1, help="speed runs of each size and precision")
    parser.add_argument("--tag", default="bf16", help="output names: TAG.md, TAG.json")
    parser.add_argument("--out", type=Path, default=Path("bench_output"))
    args = parser.parse_args(argv)
    work = Path("/tmp/napari_unet_bf16")
    facts = cpu_facts()
    log(f"CPU {facts['cpu']}: bfloat16 flags {facts['bf16_flags']}")
    speed, predict = speed_rows(work, args.repeats), predict_rows()
    accuracy, base = ([], {"membrane_dice": None, "adapted_rand_error": None}) if args.skip_accuracy else \
        accuracy_rows(args.data, args.minutes, work)
    text = report(facts, speed, predict, accuracy, base)
    print(text)
    write_text(args.out / f"{args.tag}.md", text)
    write_json(args.out / f"{args.tag}.json", {"facts": facts, "training_speed": speed, "prediction_speed": predict,
                                        "isbi": accuracy, "baseline": base, "minutes": args.minutes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
