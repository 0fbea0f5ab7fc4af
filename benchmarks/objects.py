"""Objects on several stacks: the plugin's defaults against a classical watershed, in one run.

For each stack the U-Net is trained with the default settings on the object ids of a few
annotated slices ("Objects have own ids"), then segments the whole stack through the
engine, exactly as the dock does. The same run scores, the same way:

- the U-Net's objects with every object mode ("3d", "2d", "linked") and both seed kinds,
  found from the one set of predicted probabilities (so the modes are compared fairly);
- a classical baseline: Gaussian + Otsu + distance-transform seeded watershed, in 3-D and
  per slice, its polarity taken from the annotations;
- the foreground Dice of the U-Net and of Gaussian + Otsu.

The user's path is scored too: the stack as a bare TIFF (no voxel size in the file, none
passed, no tuning flags), where prediction takes the object step the model tuned on its
annotations and estimates the slice spacing from the image; beside it the same model with
the true voxel size, and the fixed defaults with and without it (the figures before the
tuning existed). Those rows are found offline from the one set of probabilities, as
prediction finds them; the bare row also goes through the engine and must match.

Stacks: the built-in synthetic cells (membrane stain, 3-D truth), synthetic touching nuclei
(3-D truth) and, with ``--data``, ISBI 2012 (cell ids per slice on slices 0-19, scored per
slice on 20-29 with the membranes of the truth ignored); ``isbi_membranes`` trains the same
stack on its cell/membrane mask instead (a class model) and asks it for the cells. ``public3d``
(not run by default) is a public stack nobody tuned for, from ``--public-data`` (``image.tif``,
``labels.tif`` with 3-D ids, see its README.md): ids on a few spread slices, scored as the cells.

    python benchmarks/objects.py --data path/to/isbi2012                 # defaults
    python benchmarks/objects.py --data path/to/isbi2012 --max-seconds 1800 --early-stopping 0 \
        --lr-schedule cosine --tag 30min       # the same model trained for 30 minutes
    python benchmarks/objects.py --data path/to/isbi2012 --boundary-width 2 --tag boundary2   # a wider target
    python benchmarks/objects.py --stacks public3d --tag public3d   # the public 3-D stack alone
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA, log, markdown_table, run_engine_job, write_json, write_text  # noqa: E402

from napari_unet.runtime.jobs.predict import start_prediction  # noqa: E402
from napari_unet.runtime.jobs.train import start_training  # noqa: E402
from napari_unet.core.objects import defaults as object_defaults  # noqa: E402
from napari_unet.core.bundle import read_bundle_meta  # noqa: E402
from napari_unet.samples.baselines import choose_polarity, otsu_foreground, watershed_objects  # noqa: E402
from napari_unet.core.config import PredictConfig, TrainConfig  # noqa: E402
from napari_unet.core.metrics import cell_regions, dice, object_report  # noqa: E402
from napari_unet.core.objects.maps import object_maps  # noqa: E402
from napari_unet.core.objects.streaming import label_volume  # noqa: E402
from napari_unet.core.predict.postprocess import labels_from_probs  # noqa: E402
from napari_unet.core.predict.write import object_mode  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ISBI_TRAIN, ISBI_TEST = slice(0, 20), slice(20, 30)
ISBI_VOXEL_NM = (50.0, 4.0, 4.0)  # serial-section TEM: 50 nm sections, 4 nm pixels
PUBLIC3D_DATA = DEFAULT_DATA.parent / "public3d"
PUBLIC3D_VOXEL_UM = (0.2837, 0.1268, 0.1268)  # plant-seg's 1135_mini.h5 (the data's README.md); not in the TIFFs
VARIANTS = [(mode, seeds) for mode in ("3d", "linked", "2d") for seeds in ("interior", "distance")]


# ------------------------------------------------------------------ stacks


def synthetic_stack(kind: str) -> dict:
    from napari_unet.samples import synthetic

    make = {"cells": synthetic.make_cells_volume, "nuclei": synthetic.make_nuclei_volume}[kind]
    sample = make()
    labels = np.where(sample["labels"] != 0, sample["instances"], 0).astype(np.uint32)
    return {"name": f"synthetic {kind}", "image": sample["image"], "labels": labels,
            "truth": sample["instances"], "score": slice(None), "per_slice": False,
            "voxel_size": tuple(sample["scale"]), "instances": True}


def isbi_stack(data: Path, membranes: bool = False) -> dict:
    """ISBI 2012 with cell ids on slices 0-19, or (``membranes``) the cell/membrane mask."""
    import tifffile

    image = tifffile.imread(data / "train-volume.tif")
    # Cell ids per slice (4-connected cell regions): the truth has no 3-D ids.
    truth = cell_regions(tifffile.imread(data / "train-labels.tif")).astype(np.uint32)
    labels = np.zeros_like(truth)
    labels[ISBI_TRAIN] = (truth[ISBI_TRAIN] > 0) if membranes else truth[ISBI_TRAIN]
    return {"name": "ISBI 2012" + (" (membrane model)" if membranes else ""), "image": image, "labels": labels,
            "truth": truth, "score": ISBI_TEST, "per_slice": True, "voxel_size": ISBI_VOXEL_NM,
            "instances": not membranes}


def public3d_stack(data: Path) -> dict:
    """A public stack with 3-D ids: the ids of a few spread slices annotated, scored in 3-D as the cells."""
    import tifffile

    from napari_unet.samples.synthetic import default_annotated_slices

    image = tifffile.imread(data / "image.tif")
    truth = tifffile.imread(data / "labels.tif").astype(np.uint32)
    annotated = list(default_annotated_slices(truth.shape[0]))
    labels = np.zeros_like(truth)
    labels[annotated] = truth[annotated]
    return {"name": "public 3-D", "image": image, "labels": labels, "truth": truth, "score": slice(None),
            "per_slice": False, "voxel_size": PUBLIC3D_VOXEL_UM, "instances": True}


# ------------------------------------------------------------------ the U-Net


def train(stack: dict, train_cfg: TrainConfig, out: Path) -> dict:
    def on_event(event):
        if event["type"] == "epoch":
            log(f"{stack['name']}: epoch {event['epoch']} loss {event['loss']:.4f} "
                f"val loss {event['val_loss'] or float('nan'):.4f} lr {event['learning_rate']:.2e}")
        elif event["type"] in ("warning", "error"):
            log(f"{stack['name']}: {event['type']}: {event.get('message')}")

    train_cfg = train_cfg.replace(instances=stack["instances"])
    job = start_training(stack["image"], stack["labels"], model_cfg=None, train_cfg=train_cfg, out_dir=str(out),
                         overwrite=True)
    run = run_engine_job(job, on_event)
    final = run["final"]
    epochs = [e for e in run["events"] if e["type"] == "epoch"]
    return {"model_dir": final["model_dir"], "finish_reason": final.get("finish_reason"),
            "train_s": final["seconds"], "epochs": len(epochs), "best_epoch": final["best_epoch"],
            "best_val_loss": final["best_val_loss"], "peak_rss_worker_mb": run["peak_rss_worker_mb"]}


def user_fields(stack: dict, model_dir: str, voxel_size) -> tuple[dict, list[str]]:
    """The object settings `napari-unet predict` takes on this stack: the model's tuned ones, and
    ``voxel_size`` if given, else estimated from the image (a bare TIFF)."""
    return object_defaults.resolve(read_bundle_meta(model_dir), {"voxel_size": voxel_size}, volume=stack["image"],
                                   scale=None, is_3d=True)


def predict(stack: dict, model_dir: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Objects as a user gets them from a bare TIFF (through the engine), and the probabilities of
    every class."""
    fields, lines = user_fields(stack, model_dir, None)
    for line in lines:
        log(f"{stack['name']}: {line}")
    cfg = PredictConfig(output="instances", return_probabilities=True, **fields)
    job = start_prediction(stack["image"], model_dir, predict_cfg=cfg, all_classes=True)
    run = run_engine_job(job, keep_outputs=("labels", "probs"))
    timing = {"predict_s": run["wall_s"], "peak_rss_worker_mb": run["peak_rss_worker_mb"]}
    return run["outputs"]["labels"], run["outputs"]["probs"], timing


# ------------------------------------------------------------------ scores


def score(objects, stack: dict) -> dict:
    region = stack["score"]
    pred, truth = objects[region], stack["truth"][region]
    report = object_report(pred, truth, per_slice=stack["per_slice"])
    report["foreground_dice"] = dice(pred > 0, truth > 0, label=True)
    return report


def objects_with(maps, fields: dict) -> np.ndarray:
    """Objects of ``maps`` with PredictConfig ``fields``, as prediction finds them (slices along Z)."""
    cfg = PredictConfig(output="instances", **fields)
    sampling = tuple(cfg.voxel_size) or None
    mode = object_mode(cfg.objects, sampling, 0)
    return label_volume(maps, mode=mode, block_slices=cfg.block_slices, halo=cfg.halo, threshold=cfg.threshold,
                        seeds=cfg.seeds, seed_distance=cfg.seed_distance, min_size=cfg.min_object_size,
                        sampling=sampling, join_pieces=mode != "3d")


def user_path_scores(probs, stack: dict, model_dir: str, engine_objects) -> dict:
    """Bare TIFF and true voxel size, tuned and fixed defaults, on the same probabilities."""
    maps = _maps(probs, stack, model_dir)
    true = tuple(stack["voxel_size"])
    settings = {
        "bare TIFF, tuned (the user's path)": user_fields(stack, model_dir, None)[0],
        "voxel size given, tuned": user_fields(stack, model_dir, true)[0],
        "voxel size given, fixed defaults": {"voxel_size": true},
        "bare TIFF, fixed defaults, cubic voxels (before)": {},
    }
    scores = {name: score(objects_with(maps, fields), stack) for name, fields in settings.items()}
    offline = objects_with(maps, settings["bare TIFF, tuned (the user's path)"])
    scores["engine equals offline (bare)"] = bool(np.array_equal(offline, engine_objects))
    scores["settings"] = {name: {k: (list(v) if isinstance(v, tuple) else v) for k, v in fields.items()}
                          for name, fields in settings.items()}
    return scores


def _maps(probs, stack: dict, model_dir: str):
    maps = object_maps(probs, "boundary" if stack["instances"] else "binary")
    if read_bundle_meta(model_dir).objects_tile:
        maps[..., 0] = 1.0  # as prediction does with fill_background="auto" for this model
    return maps


def isbi_membrane_dice(probs, stack: dict) -> float:
    """Membranes = class 0 of what `predict --output labels` gives (argmax of a softmax, the
    threshold of a sigmoid), on the scored slices; not P(class 0) > 0.5, as instance models once were."""
    membrane = labels_from_probs(probs) == 0
    return dice(membrane[ISBI_TEST], stack["truth"][ISBI_TEST] == 0, label=True)


def variant_scores(probs, stack: dict, model_dir: str) -> dict:
    """Every object mode and seed kind on the same probabilities (and the model's background rule)."""
    maps = _maps(probs, stack, model_dir)
    scores = {}
    for mode, seeds in VARIANTS:
        start = time.perf_counter()
        # As prediction does: pieces joined across predicted interior in 2-D modes only.
        objects = label_volume(maps, mode=mode, seeds=seeds, sampling=stack["voxel_size"], join_pieces=mode != "3d")
        scores[f"{mode}, {seeds} seeds"] = {**score(objects, stack), "seconds": time.perf_counter() - start}
    return scores


def baseline_scores(stack: dict) -> dict:
    image = stack["image"]
    polarity = choose_polarity(image, stack["labels"])
    region = stack["score"]
    otsu = otsu_foreground(image, polarity=polarity)
    scores = {"polarity": polarity,
              "otsu_foreground_dice": dice(otsu[region] > 0, stack["truth"][region] > 0, label=True)}
    for per_slice in (False, True):
        objects = watershed_objects(image, polarity=polarity, sampling=stack["voxel_size"], per_slice=per_slice)
        scores["watershed per slice" if per_slice else "watershed 3-D"] = score(objects, stack)
    # What a user of the classical pipeline gets from a bare TIFF: cubic voxels.
    scores["watershed 3-D, bare TIFF"] = score(watershed_objects(image, polarity=polarity, sampling=None), stack)
    return scores


# ------------------------------------------------------------------ report


COLUMNS = ("membrane_dice", "adapted_rand_error", "rand_split_score", "rand_merge_score", "voi_split", "voi_merge",
           "precision", "recall", "f1", "mean_matched_iou", "foreground_dice", "n_pred", "n_true")


def table(results: dict) -> str:
    header = ["stack", "method"] + list(COLUMNS)
    rows = []
    for name, res in results.items():
        rows.append([name, "**U-Net, bare TIFF (engine)**"] + [res["unet"].get(c) for c in COLUMNS])
        for variant, rep in res["user_path"].items():
            if isinstance(rep, dict) and variant != "settings":
                rows.append([name, f"U-Net, {variant}"] + [rep.get(c) for c in COLUMNS])
        for variant, rep in res["variants"].items():
            rows.append([name, f"U-Net objects: {variant}"] + [rep.get(c) for c in COLUMNS])
        for key in ("watershed 3-D", "watershed 3-D, bare TIFF", "watershed per slice"):
            rows.append([name, f"Gaussian + Otsu + {key}"] + [res["baseline"][key].get(c) for c in COLUMNS])
    return markdown_table(header, rows)


def run_stack(stack: dict, train_cfg: TrainConfig, out: Path) -> dict:
    log(f"{stack['name']}: {stack['image'].shape}, training (cap {train_cfg.max_seconds:.0f} s)")
    trained = train(stack, train_cfg, out / "models" / stack["name"].replace(" ", "_"))
    log(f"{stack['name']}: trained {trained['train_s']:.0f} s, {trained['epochs']} epochs "
        f"({trained['finish_reason']}); predicting")
    objects, probs, timing = predict(stack, trained["model_dir"])
    np.save(out / f"{stack['name'].replace(' ', '_')}_probs.npy", probs)  # to study the objects step offline
    unet = score(objects, stack)
    if stack["per_slice"]:  # ISBI: the membrane Dice of the same model's class labels
        unet["membrane_dice"] = isbi_membrane_dice(probs, stack)
    result = {"training": trained, "prediction": timing, "unet": unet,
              "object_tuning": read_bundle_meta(trained["model_dir"]).json_dict()["object_tuning"],
              "user_path": user_path_scores(probs, stack, trained["model_dir"], objects),
              "variants": variant_scores(probs, stack, trained["model_dir"]), "baseline": baseline_scores(stack)}
    unet, base = result["unet"], result["baseline"]
    best_base = min(base["watershed 3-D"]["adapted_rand_error"], base["watershed per slice"]["adapted_rand_error"])
    log(f"{stack['name']}: U-Net ARE {unet['adapted_rand_error']:.3f} F1 {unet['f1']:.3f}; "
        f"baseline best ARE {best_base:.3f}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ISBI 2012 folder (skipped if absent)")
    parser.add_argument("--public-data", type=Path, default=PUBLIC3D_DATA,
                        help="public 3-D stack folder for --stacks public3d (skipped if absent)")
    parser.add_argument("--stacks", nargs="+", default=["cells", "nuclei", "isbi"])
    parser.add_argument("--max-seconds", type=float, default=TrainConfig().max_seconds,
                        help="training time cap (the default is the plugin's)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--lr-schedule", default=TrainConfig().lr_schedule)
    parser.add_argument("--early-stopping", type=int, default=TrainConfig().early_stopping_patience,
                        help="patience in epochs; 0 trains for the whole --max-seconds")
    parser.add_argument("--boundary-width", type=int, default=TrainConfig().boundary_width,
                        help="px of the boundary class inside each object (the target to compare)")
    parser.add_argument("--seed", type=int, default=TrainConfig().seed, help="the training's seed")
    parser.add_argument("--tag", default="defaults")
    parser.add_argument("--out", type=Path, default=Path("/tmp/napari_unet_objects"))
    args = parser.parse_args(argv)

    train_cfg = TrainConfig(instances=True, max_seconds=args.max_seconds, threads=args.threads,
                            lr_schedule=args.lr_schedule, early_stopping_patience=args.early_stopping,
                            boundary_width=args.boundary_width, seed=args.seed)
    results = {}
    for key in args.stacks:
        if key.startswith("isbi") and not (args.data / "train-volume.tif").is_file():
            log(f"ISBI 2012 not found in {args.data}: skipped")
            continue
        if key == "public3d" and not (args.public_data / "image.tif").is_file():
            log(f"public 3-D stack not found in {args.public_data}: skipped")
            continue
        if key.startswith("isbi"):
            stack = isbi_stack(args.data, key == "isbi_membranes")
        else:
            stack = public3d_stack(args.public_data) if key == "public3d" else synthetic_stack(key)
        results[stack["name"]] = run_stack(stack, train_cfg, args.out)
    text = table(results)
    print(text)
    write_text(RESULTS / f"objects_{args.tag}_table.md", text)
    write_json(RESULTS / f"objects_{args.tag}.json", {"train_config": train_cfg.to_dict(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
