"""Accuracy and speed on ISBI 2012 EM: the plugin's defaults against the classic U-Net recipe.

Both recipes train through the engine (a spawned worker, as in napari) on slices 0-19,
with slices 20-29 left unannotated in the same Labels stack, under the same wall-clock
budget, then segment the volume through the engine and are scored on slices 20-29.

    python benchmarks/isbi.py --data ../shared/data/isbi2012 --minutes 10 --out bench_output

Writes ``isbi.json``, ``isbi_table.md`` and ``isbi_dice_vs_time.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DEFAULT_DATA,
    cell_mask,
    fmt,
    keras_helper,
    log,
    machine_info,
    markdown_table,
    matmul_peak_gflops,
    parent_lifetime_peak_rss_mb,
    resize_stack,
    run_engine_job,
    write_json,
    write_text,
)

from napari_unet.runtime.jobs.predict import start_prediction  # noqa: E402
from napari_unet.runtime.jobs.train import start_training  # noqa: E402
from napari_unet.core.config import ModelConfig, PredictConfig, TrainConfig  # noqa: E402
from napari_unet.core.metrics import evaluate_membrane  # noqa: E402

TRAIN_SLICES = slice(0, 20)
TEST_SLICES = slice(20, 30)
FULL_SIZE = 512


# ------------------------------------------------------------------ data


def load_isbi(data_dir) -> tuple[np.ndarray, np.ndarray]:
    """``(image, cells)``: the 30 x 512 x 512 EM stack and its truth (True = cell, False = membrane)."""
    import tifffile

    data_dir = Path(data_dir)
    paths = [data_dir / "train-volume.tif", data_dir / "train-labels.tif"]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"ISBI 2012 files not found: {missing}; pass the folder that holds them with --data.")
    image, labels = (tifffile.imread(p) for p in paths)
    if image.shape != labels.shape or image.shape[0] < TEST_SLICES.stop:
        raise ValueError(
            f"Expected two stacks of the same shape with at least {TEST_SLICES.stop} slices, "
            f"got {image.shape} and {labels.shape}; check --data."
        )
    return image, labels != 0


def all_cell_val_dice(labels, train_cfg: TrainConfig) -> float:
    """Cell Dice of predicting "cell" everywhere on the slices the trainer holds out: the
    floor a useful validation Dice must beat (most pixels here are cell)."""
    from napari_unet.core.data import annotated_slices, split_validation

    idx = annotated_slices(labels, train_cfg.annotation_mode)
    _, val_items = split_validation(idx, labels, train_cfg.val_fraction, seed=train_cfg.seed)
    truth = np.concatenate([labels[z, y0:y1, x0:x1].ravel() != 0 for z, (y0, y1, x0, x1) in val_items])
    return 2 * truth.sum() / (truth.sum() + truth.size) if truth.size else None


def partial_annotation(cells: np.ndarray) -> np.ndarray:
    """What a user would leave in napari: cell = 1 and membrane = 0 on slices 0-19
    ("full slices" mode: 0 is background there), slices 20-29 untouched (all 0, ignored)."""
    labels = np.zeros(cells.shape, np.uint8)
    labels[TRAIN_SLICES] = cells[TRAIN_SLICES]
    return labels


# ------------------------------------------------------------------ recipes


def recipes(minutes: float) -> dict:
    seconds = float(minutes * 60)
    return {
        "plugin": {
            "title": "plugin defaults, fixed time",
            "size": FULL_SIZE,
            "model_cfg": ModelConfig(),
            # Training for the whole budget, as the figures in the README were measured: the cosine
            # schedule follows the budget, no early stopping (objects.py measures the new defaults).
            "train_cfg": TrainConfig(max_seconds=seconds, epochs=100000, steps_per_epoch=50,
                                     lr_schedule="cosine", early_stopping_patience=0),
            "notes": "ModelConfig() and TrainConfig() defaults at 512 x 512, trained for the whole time "
                     "limit (cosine schedule over it, no early stopping, 50 steps an epoch).",
        },
        "classic": {
            "title": "classic U-Net (256 px)",
            "size": 256,
            "model_cfg": ModelConfig(n_filters=64, depth=4, dropout=0.5, batch_norm=False),
            # Whole 256 x 256 slices (patch = slice), no augmentation, plain BCE, Adam at a
            # constant 1e-4, batch 2; one epoch = 8 steps = the 16 training slices once.
            "train_cfg": TrainConfig(
                loss="bce", patch_size=256, batch_size=2, learning_rate=1e-4, lr_schedule="constant",
                augment=False, epochs=100000, steps_per_epoch=8, max_seconds=seconds,
                early_stopping_patience=0,
            ),
            "notes": (
                "Ronneberger et al. 2015 as in the common Keras port: 64 base filters, depth 4, ReLU, "
                "no batch norm, dropout 0.5 after the bottleneck, 2x2 transposed-conv up-sampling, "
                "'same' padding, BCE, Adam 1e-4 (constant), batch 2, slices resized to 256 x 256, "
                "no augmentation; trained by the plugin's own train() through the engine."
            ),
        },
    }


# ------------------------------------------------------------------ training


class CheckpointSnapshots:
    """Copies the model folder whenever the trainer has rewritten it (best model so far),
    so the test Dice can be plotted against training time afterwards."""

    def __init__(self, model_dir: Path, into: Path):
        self.model_dir = model_dir
        self.into = into
        self.seen_mtime = None
        self.snapshots = []  # (seconds since the start event, folder)

    def check(self, seconds: float):
        meta = self.model_dir / "bundle.json"
        try:
            mtime = meta.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self.seen_mtime:
            return
        target = self.into / f"{len(self.snapshots):03d}_{seconds:.0f}s"
        try:
            shutil.copytree(self.model_dir, target)
        except (OSError, shutil.Error):
            shutil.rmtree(target, ignore_errors=True)  # caught mid-rename; try at the next epoch
            return
        self.seen_mtime = mtime
        self.snapshots.append((seconds, target))


def step_statistics(events: list, batch_size: int) -> dict:
    """Training-step throughput from the arrival times of "batch" events.

    Only intervals between two batch events of one epoch count (divided by the steps between
    them: events are spaced in time), so validation and the first step (which builds the
    TensorFlow graph) are left out.
    """
    batches = [e for e in events if e["type"] == "batch"]
    spans = [(b["t"] - a["t"], b["batch"] - a["batch"]) for a, b in zip(batches, batches[1:])
             if b["epoch"] == a["epoch"]]
    seconds, steps = sum(s for s, _ in spans), sum(n for _, n in spans)
    mean = seconds / steps if steps else None
    last = batches[-1] if batches else None
    n_steps = (last["epoch"] - 1) * last["steps"] + last["batch"] if last else 0
    return {
        "n_steps": n_steps,
        "patches": n_steps * batch_size,
        "mean_step_s": mean,
        "median_step_s": statistics.median(s / n for s, n in spans) if spans else None,
        "patches_per_s": batch_size / mean if mean else None,
    }


def train_recipe(key: str, recipe: dict, image, labels, out: Path, snapshots: bool = True) -> dict:
    model_dir = out / "models" / key
    snaps = CheckpointSnapshots(model_dir, out / "checkpoints" / key)
    shutil.rmtree(snaps.into, ignore_errors=True)
    start_t = {}

    def on_event(event):
        kind = event["type"]
        if kind == "start":
            start_t["t"] = event["t"]
            log(f"{key}: training on {event['device']}, {event['params']:,} parameters, "
                f"{event['n_train_slices']} train / {event['n_val_slices']} validation slices")
        elif kind == "epoch":
            since = event["t"] - start_t.get("t", 0.0)
            log(f"{key}: epoch {event['epoch']} loss {event['loss']:.4f} val Dice {fmt(event['val_dice'])} "
                f"({event['seconds']:.1f} s, {since:.0f} s in)")
            if snapshots:
                snaps.check(since)
        elif kind in ("warning", "error"):
            log(f"{key}: {kind}: {event.get('message')}")

    cfg = recipe["train_cfg"]
    log(f"{key}: training for at most {cfg.max_seconds:.0f} s ({recipe['notes']})")
    job = start_training(image, labels, model_cfg=recipe["model_cfg"], train_cfg=cfg, out_dir=model_dir, overwrite=True)
    run = run_engine_job(job, on_event)
    final = run["final"]
    t0 = start_t.get("t", 0.0)
    epochs = [
        {"epoch": e["epoch"], "t": e["t"] - t0, "seconds": e["seconds"], "loss": e["loss"],
         "val_loss": e["val_loss"], "val_dice": e["val_dice"], "val_iou": e["val_iou"]}
        for e in run["events"] if e["type"] == "epoch"
    ]
    start = next(e for e in run["events"] if e["type"] == "start")
    steps = step_statistics(run["events"], start["batch_size"])  # "auto" sizes as resolved for the device
    return {
        "model_dir": final["model_dir"],
        "finish_reason": final.get("finish_reason", final["type"]),
        "device": start["device"],
        "params": start["params"],
        "batch_size": start["batch_size"],
        "patch_size": start["patch_size"],
        "precision": start.get("precision"),
        "xla": start.get("xla"),
        "wall_s": run["wall_s"],  # worker start, data preparation, training and saving
        "trainer_s": final["seconds"],
        "startup_s": t0,
        "best_epoch": final["best_epoch"],
        "best_val_dice": final["best_val_dice"],
        "epochs": epochs,
        "steps": steps,
        "patches_per_s_overall": steps["patches"] / final["seconds"] if final["seconds"] else None,
        "peak_rss_worker_mb": run["peak_rss_worker_mb"],
        "peak_rss_parent_mb": run["peak_rss_parent_mb"],
        "snapshots": [(t, str(p)) for t, p in snaps.snapshots],
    }


# ------------------------------------------------------------------ prediction


def slice_rates(events: list, wall_s: float) -> dict:
    """End-to-end slices/s (worker start and model loading included) and the steady rate
    after the first batch of slices (which also builds the TensorFlow graph)."""
    times = [e["t"] for e in events if e["type"] == "slice"]
    n = len(times)
    first_burst = sum(1 for t in times if t <= times[0] + 0.05) if times else 0
    steady = None
    if n > first_burst and times[-1] > times[first_burst - 1]:
        steady = (n - first_burst) / (times[-1] - times[first_burst - 1])
    return {
        "n_slices": n,
        "wall_s": wall_s,
        "first_slice_s": times[0] if times else None,
        "end_to_end_slices_per_s": n / wall_s if wall_s else None,
        "steady_slices_per_s": steady,
        "steady_slices_timed": n - first_burst,
    }


def predict_recipe(key: str, volume, model_dir: str, truth_cells, test_offset: int, tta: bool) -> dict:
    """Segment ``volume`` (``(Z, Y, X)``, or ``(Z, Y, X, C)`` with channels last) through the
    engine; score its slices from ``test_offset`` on."""
    full_size = truth_cells.shape[1:]
    need_probs = tuple(volume.shape[1:3]) != tuple(full_size)  # resized: threshold after resizing back
    cfg = PredictConfig(tta=tta, return_probabilities=need_probs)
    label = f"{key}{' + TTA' if tta else ''}"
    log(f"{label}: predicting {volume.shape[0]} slices of {volume.shape[1]} x {volume.shape[2]} through the engine")
    job = start_prediction(volume, model_dir, predict_cfg=cfg, channel_axis=-1 if volume.ndim == 4 else None)
    run = run_engine_job(job, keep_outputs=("probs",) if need_probs else ("labels",))
    if need_probs:
        cells = cell_mask(run["outputs"]["probs"][test_offset:], full_size, cfg.threshold)
    else:
        cells = run["outputs"]["labels"][test_offset:] != 0
    scores = evaluate_membrane(cells, truth_cells)
    rates = slice_rates(run["events"], run["wall_s"])
    log(f"{label}: membrane Dice {scores['membrane_dice']:.4f}, pixel accuracy {scores['pixel_accuracy']:.4f}, "
        f"adapted Rand error {scores['adapted_rand_error']:.4f}; {rates['end_to_end_slices_per_s']:.2f} slices/s "
        f"end to end, {fmt(rates['steady_slices_per_s'])} steady")
    return {
        "predict_config": cfg.to_dict(),
        "scores": scores,
        **rates,
        "peak_rss_worker_mb": run["peak_rss_worker_mb"],
        "peak_rss_parent_mb": run["peak_rss_parent_mb"],
    }


# ------------------------------------------------------------------ keras-side figures


def helper_figures(results: dict, volumes: dict, truth_test, keep_checkpoints: bool, score_checkpoints: bool):
    """FLOP counts, raw ``predict_on_batch`` speed and checkpoint test scores, in a helper process."""
    import _keras_tasks as tasks

    batch = PredictConfig().batch_size
    with keras_helper() as helper:
        for key, res in results.items():
            size = res["size"]
            cfg = res["model_config"]
            patch = res["train_config"]["patch_size"]
            log(f"{key}: counting FLOPs and timing raw model.predict_on_batch")
            res["flops"] = {
                "train_patch": helper.submit(tasks.conv_flops, cfg, patch, patch).result(),
                "predict_slice": helper.submit(tasks.conv_flops, cfg, size, size).result(),
            }
            res["raw_predict"] = helper.submit(
                tasks.raw_predict_speed, res["training"]["model_dir"], volumes[key], batch
            ).result()
            res["checkpoints"] = []
            if not score_checkpoints:
                continue
            for t, folder in res["training"]["snapshots"]:
                scores = helper.submit(
                    tasks.score_bundle, folder, volumes[key][TEST_SLICES], truth_test, PredictConfig().to_dict()
                ).result()
                log(f"{key}: checkpoint at {t:.0f} s: test membrane Dice {scores['membrane_dice']:.4f}")
                res["checkpoints"].append({"t": t, **scores})
                if not keep_checkpoints:
                    shutil.rmtree(folder, ignore_errors=True)
            if res["training"]["snapshots"] and not keep_checkpoints:
                folder = Path(res["training"]["snapshots"][0][1]).parent
                shutil.rmtree(folder, ignore_errors=True)
                if not any(folder.parent.iterdir()):
                    folder.parent.rmdir()


def derived_figures(res: dict, matmul_gflops: float) -> None:
    flops = res["flops"]
    steps = res["training"]["steps"]
    train_fwd = flops["train_patch"]["forward_flops"]
    # Training ~ 3 x forward: the forward pass, plus gradients for inputs and for weights.
    res["train_gflops_per_s"] = (
        3 * train_fwd * steps["patches_per_s"] / 1e9 if steps["patches_per_s"] else None
    )
    fwd = flops["predict_slice"]["forward_flops"]
    raw = res["raw_predict"]["slices_per_s"]
    steady = res["prediction"]["steady_slices_per_s"]
    res["raw_predict"]["gflops_per_s"] = fwd * res["raw_predict"]["warm_slices_per_s"] / 1e9
    res["prediction"]["steady_gflops_per_s"] = fwd * steady / 1e9 if steady else None
    res["engine_vs_raw"] = steady / raw if steady and raw else None
    res["train_fraction_of_matmul_peak"] = (
        res["train_gflops_per_s"] / matmul_gflops if res["train_gflops_per_s"] else None
    )


# ------------------------------------------------------------------ report


def table(results: dict, matmul_gflops: float) -> str:
    keys = list(results)
    rows = []

    def row(name, get, digits=None):
        values = []
        for key in keys:
            try:
                value = get(results[key])
            except (KeyError, TypeError, IndexError):
                value = None
            if digits is not None and isinstance(value, (int, float)):
                value = f"{value:,.{digits}f}"
            values.append(value)
        rows.append([name] + values)

    mc = lambda r: r["model_config"]  # noqa: E731
    tc = lambda r: r["train_config"]  # noqa: E731
    tr = lambda r: r["training"]  # noqa: E731
    row("model", lambda r: f"{mc(r)['n_filters']} filters, depth {mc(r)['depth']}, "
        f"BN {'on' if mc(r)['batch_norm'] else 'off'}, dropout {mc(r)['dropout']}")
    row("parameters", lambda r: f"{tr(r)['params']:,}")
    row("input / patch / batch", lambda r: f"{r['size']} / {tc(r)['patch_size']} / {tc(r)['batch_size']}")
    row("loss, learning rate, augment", lambda r: f"{tc(r)['loss']}, {tc(r)['learning_rate']:g}, {tc(r)['augment']}")
    row("time budget (s)", lambda r: tc(r)["max_seconds"], 0)
    row("epochs done (steps) / stop reason",
        lambda r: f"{len(tr(r)['epochs'])} ({tr(r)['steps']['n_steps']}) / {tr(r)['finish_reason']}")
    row("training wall time, incl. worker start (s)", lambda r: tr(r)["wall_s"], 1)
    row("training patches/s (steps only)", lambda r: tr(r)["steps"]["patches_per_s"], 2)
    row("training patches/s (incl. validation)", lambda r: tr(r)["patches_per_s_overall"], 2)
    row("forward GFLOP per training patch", lambda r: r["flops"]["train_patch"]["forward_flops"] / 1e9, 2)
    row("achieved training GFLOP/s (3 x forward)", lambda r: r["train_gflops_per_s"], 1)
    row(f"  as % of numpy matmul peak ({matmul_gflops:.0f} GFLOP/s)",
        lambda r: 100 * r["train_fraction_of_matmul_peak"], 1)
    row("best val Dice (cell, held-out annotated slices) / epoch",
        lambda r: f"{tr(r)['best_val_dice']:.4f} / {tr(r)['best_epoch']}")
    row("  val Dice of predicting all cell (reference)", lambda r: r["val_dice_all_cell"], 4)
    row("test membrane Dice (slices 20-29)", lambda r: r["prediction"]["scores"]["membrane_dice"], 4)
    row("test membrane Dice with TTA", lambda r: r["prediction_tta"]["scores"]["membrane_dice"], 4)
    row("test pixel accuracy", lambda r: r["prediction"]["scores"]["pixel_accuracy"], 4)
    row("test pixel accuracy with TTA", lambda r: r["prediction_tta"]["scores"]["pixel_accuracy"], 4)
    row("test adapted Rand error (lower is better)", lambda r: r["prediction"]["scores"]["adapted_rand_error"], 4)
    row("test adapted Rand error with TTA", lambda r: r["prediction_tta"]["scores"]["adapted_rand_error"], 4)
    row("predicted slice size", lambda r: f"{r['size']} x {r['size']}")
    row("engine slices/s, end to end (incl. worker start)", lambda r: r["prediction"]["end_to_end_slices_per_s"], 2)
    row("engine slices/s, steady", lambda r: r["prediction"]["steady_slices_per_s"], 2)
    row("raw model.predict_on_batch slices/s, same calls", lambda r: r["raw_predict"]["slices_per_s"], 2)
    row("engine steady / raw (target >= 80 %)", lambda r: f"{100 * r['engine_vs_raw']:.0f} %")
    row("raw model.predict_on_batch slices/s, warmed up", lambda r: r["raw_predict"]["warm_slices_per_s"], 2)
    row("prediction GFLOP/s (raw, warmed up)", lambda r: r["raw_predict"]["gflops_per_s"], 1)
    row("engine slices/s with TTA, end to end", lambda r: r["prediction_tta"]["end_to_end_slices_per_s"], 3)
    row("peak RSS worker, training (MB)", lambda r: tr(r)["peak_rss_worker_mb"], 0)
    row("peak RSS worker, prediction (MB)", lambda r: r["prediction"]["peak_rss_worker_mb"], 0)
    row("peak RSS parent (MB)", lambda r: max(tr(r)["peak_rss_parent_mb"], r["prediction"]["peak_rss_parent_mb"]), 0)
    header = ["ISBI 2012, train slices 0-19, test 20-29"] + [results[k]["title"] for k in keys]
    return markdown_table(header, rows)


def plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_val, ax_test) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, res in results.items():
        epochs = res["training"]["epochs"]
        line, = ax_val.plot([e["t"] for e in epochs], [e["val_dice"] for e in epochs], ".-", label=res["title"])
        if res.get("val_dice_all_cell") is not None:
            ax_val.axhline(res["val_dice_all_cell"], color=line.get_color(), ls=":", lw=1,
                           label=f"{res['title']}: all cell")
        points = [(c["t"], c["membrane_dice"]) for c in res.get("checkpoints", [])]
        points.append((res["training"]["trainer_s"], res["prediction"]["scores"]["membrane_dice"]))
        ax_test.plot(*zip(*points), "o-", label=res["title"])
    ax_val.set(xlabel="training time (s)", ylabel="val Dice (cell class)",
               title="Validation: held-out annotated slices")
    ax_test.set(xlabel="training time (s)", ylabel="membrane Dice",
                title="Test slices 20-29: best model so far")
    ax_test.set_ylim(0, 1)  # the validation panel zooms in: its values sit close to the all-cell line
    for ax in (ax_val, ax_test):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ main


def run(data: Path, minutes: float, out: Path, tta: bool = True, score_checkpoints: bool = True,
        keep_checkpoints: bool = False, only=None) -> dict:
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    log(f"machine: {machine['cpu']}, {machine['usable_cores']} cores, load {machine['load_average_at_start']}")
    matmul = matmul_peak_gflops()
    log(f"numpy float32 matmul peak: {matmul:.1f} GFLOP/s")

    image, cells = load_isbi(data)
    truth_test = cells[TEST_SLICES]
    labels = partial_annotation(cells)
    results, volumes = {}, {}
    for key, recipe in recipes(minutes).items():
        if only and key not in only:
            continue
        size = recipe["size"]
        if size == FULL_SIZE:
            train_image, train_labels, volume = image, labels, image
        else:
            volume = resize_stack(image, (size, size))
            train_image = volume
            train_labels = np.zeros((image.shape[0], size, size), np.uint8)
            train_labels[TRAIN_SLICES] = resize_stack(cells[TRAIN_SLICES], (size, size)) > 0.5
        volumes[key] = volume
        res = {
            "title": recipe["title"],
            "notes": recipe["notes"],
            "size": size,
            "model_config": recipe["model_cfg"].to_dict(),
            "train_config": recipe["train_cfg"].to_dict(),
        }
        res["val_dice_all_cell"] = all_cell_val_dice(train_labels, recipe["train_cfg"])
        res["training"] = train_recipe(key, recipe, train_image, train_labels, out, snapshots=score_checkpoints)
        res["train_config"].update({k: res["training"][k] for k in ("batch_size", "patch_size")})  # auto: resolved
        model_dir = res["training"]["model_dir"]
        # The whole volume, as a user would segment it; scored on the unannotated slices.
        res["prediction"] = predict_recipe(key, volume, model_dir, truth_test, TEST_SLICES.start, tta=False)
        if tta:
            res["prediction_tta"] = predict_recipe(key, volume[TEST_SLICES], model_dir, truth_test, 0, tta=True)
        results[key] = res

    helper_figures(results, volumes, truth_test, keep_checkpoints, score_checkpoints)
    for res in results.values():
        derived_figures(res, matmul)

    text = table(results, matmul)
    report = {
        "benchmark": "isbi2012",
        "data": str(Path(data).absolute()),
        "minutes": minutes,
        "machine": machine,
        "matmul_peak_gflops": matmul,
        "parent_lifetime_peak_rss_mb": parent_lifetime_peak_rss_mb(),
        # Like napari, this process must never have loaded TensorFlow or Keras itself.
        "tensorflow_or_keras_in_benchmark_process": sorted(m for m in ("tensorflow", "keras") if m in sys.modules),
        "results": results,
        "table_markdown": text,
    }
    write_json(out / "isbi.json", report)
    write_text(out / "isbi_table.md", text + "\n")
    plot(results, out / "isbi_dice_vs_time.png")
    print("\n" + text + "\n", flush=True)
    log(f"wrote {out / 'isbi.json'}, {out / 'isbi_table.md'} and {out / 'isbi_dice_vs_time.png'}")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder with train-volume.tif and train-labels.tif (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="training budget per recipe, wall clock (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("bench_output"), help="output folder")
    parser.add_argument("--no-tta", dest="tta", action="store_false", help="skip the prediction with TTA")
    parser.add_argument("--no-checkpoint-scores", dest="score_checkpoints", action="store_false",
                        help="do not score intermediate models on the test slices")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep the intermediate model folders")
    parser.add_argument("--only", nargs="+", choices=["plugin", "classic"], help="run only these recipes")


def main(argv=None) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    start = time.perf_counter()
    run(args.data, args.minutes, args.out, args.tta, args.score_checkpoints, args.keep_checkpoints, args.only)
    log(f"ISBI benchmark took {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
