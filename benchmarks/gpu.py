"""The U-Net on an accelerator: the device seen, training and prediction speed, and objects.

Runs where a GPU is visible to the Keras backend (TensorFlow or JAX); with no GPU it runs on the
CPU, says so in every row, and names its files ``cpu*`` so CPU figures never pass for GPU ones.
Like every benchmark, this process never imports Keras: all work goes through the engine's
spawned worker, exactly as from the docks.

    KERAS_BACKEND=jax python benchmarks/gpu.py --out /tmp/gpu          # JAX on the GPU
    python benchmarks/gpu.py --quick --max-seconds 20                  # a smoke run (a few minutes on a CPU)

1. Device: the worker's device line ("GPU: <name>" or "CPU (n threads)").
2. Training speed: steps/s and patches/s of the training steps alone (batch events of the second
   epoch, after compilation), the share of that epoch spent waiting for data, and the GPU's peak
   memory (the backend's allocator; none on a CPU); at the device's automatic sizes, the CPU
   defaults and GPU-sized ones, in float32 and with each mixed precision.
3. Prediction speed: slices/s through a (32, 1024, 1024) volume, class labels and 3-D objects.
4. Objects: the synthetic cells and nuclei trained with the defaults under a short time cap,
   scored in 3-D beside the classical watershed baseline (as ``objects.py``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, log, markdown_table, run_engine_job, write_json, write_text  # noqa: E402
from objects import run_stack, synthetic_stack  # noqa: E402

from napari_unet.runtime.jobs.predict import start_prediction  # noqa: E402
from napari_unet.runtime.jobs.train import start_training  # noqa: E402
from napari_unet.core.config import PredictConfig, TrainConfig  # noqa: E402

# (batch, patch, precision asked): the device's automatic sizes (None), the CPU defaults, then
# sizes that fill a GPU better, in float32 and with each mixed precision.
SPEED_RUNS = [(None, None, "off"), (4, 96, "off"), (16, 256, "off"), (32, 256, "off"), (32, 256, "float16"),
              (32, 256, "bfloat16")]
QUICK_SPEED_RUNS = [(None, None, "off"), (8, 128, "bfloat16")]
MB = 1024**2


def gpu_facts() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or "nvidia-smi printed nothing"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no nvidia-smi ({exc.__class__.__name__})"


def training_speed(stack: dict, batch, patch, precision: str, steps: int, out: Path,
                   prefetch: int = TrainConfig().prefetch_batches, xla: str = TrainConfig().xla) -> dict:
    """Steps/s and patches/s of the steps of epoch 2 (epoch 1 holds the compilation), its data-wait
    share and the GPU's peak memory. ``batch``/``patch`` None: the device's automatic sizes."""
    cfg = TrainConfig(instances=True, epochs=2, steps_per_epoch=steps, batch_size=batch, patch_size=patch,
                      mixed_precision=precision, max_seconds=0, early_stopping_patience=0, prefetch_batches=prefetch,
                      xla=xla)
    folder = out / f"speed_{batch}_{patch}_{precision}_{prefetch}_xla_{xla}"
    job = start_training(stack["image"], stack["labels"], model_cfg=None, train_cfg=cfg, out_dir=str(folder),
                         overwrite=True)
    run = run_engine_job(job)
    start = next(e for e in run["events"] if e["type"] == "start")
    # Batch events are spaced in time (core.train.BATCH_EVENT_INTERVAL_S): time over the steps between two.
    second = [(e["batch"], e["t"]) for e in run["events"] if e["type"] == "batch" and e["epoch"] == 2]
    (b0, t0), (b1, t1) = second[0], second[-1]
    step_s = (t1 - t0) / (b1 - b0)
    first_batch = next(e["t"] for e in run["events"] if e["type"] == "batch")
    epoch2 = next(e for e in run["events"] if e["type"] == "epoch" and e["epoch"] == 2)
    peak = epoch2.get("gpu_peak_bytes")
    return {"batch": start["batch_size"], "patch": start["patch_size"], "auto_sizes": batch is None,
            "precision_asked": precision, "precision": start["precision"], "prefetch": prefetch,
            "xla_asked": xla, "xla": start.get("xla"),
            "data_wait_share": epoch2.get("data_wait_share"), "device": start["device"],
            "seconds_to_first_batch": first_batch, "step_ms": 1000 * step_s, "steps_per_s": 1 / step_s,
            "patches_per_s": start["batch_size"] / step_s, "gpu_peak_mb": None if peak is None else peak / MB,
            "peak_rss_worker_mb": run["peak_rss_worker_mb"]}


def prediction_speed(model_dir: str, volume: np.ndarray, output: str) -> dict:
    cfg = PredictConfig(output=output, voxel_size=(1.0, 1.0, 1.0))
    run = run_engine_job(start_prediction(volume, model_dir, predict_cfg=cfg))
    slices = [e["t"] for e in run["events"] if e["type"] == "slice"]
    return {"output": output, "shape": list(volume.shape), "wall_s": run["wall_s"],
            "first_slice_s": slices[0], "slices_per_s": len(slices) / run["wall_s"],
            "peak_rss_worker_mb": run["peak_rss_worker_mb"]}


def big_volume(image: np.ndarray, depth: int, size: int) -> np.ndarray:
    reps = (-(-depth // image.shape[0]), -(-size // image.shape[1]), -(-size // image.shape[2]))
    return np.ascontiguousarray(np.tile(image, reps)[:depth, :size, :size])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer steps, sizes and stacks")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="training cap for the objects section")
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch of the speed runs (default 100, quick 20)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/napari_unet_gpu"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    facts = {"nvidia_smi": gpu_facts()}
    log(f"nvidia-smi: {facts['nvidia_smi']}")

    cells = synthetic_stack("cells")
    speed = []
    for batch, patch, precision in (QUICK_SPEED_RUNS if args.quick else SPEED_RUNS):
        row = training_speed(cells, batch, patch, precision, args.steps or (20 if args.quick else 100), args.out)
        log(f"train {row['device']}: batch {row['batch']} x {row['patch']}px {row['precision']}: "
            f"{row['patches_per_s']:.1f} patches/s, {row['steps_per_s']:.2f} steps/s, data wait "
            f"{100 * row['data_wait_share']:.1f} %, GPU peak {fmt(row['gpu_peak_mb'], 0)} MiB")
        speed.append(row)

    objects = {}
    for kind in ["cells"] if args.quick else ["cells", "nuclei"]:
        stack = synthetic_stack(kind)
        cap = args.max_seconds
        objects[stack["name"]] = run_stack(stack, TrainConfig(instances=True, max_seconds=cap), args.out)

    model_dir = objects["synthetic cells"]["training"]["model_dir"]
    volume = big_volume(cells["image"], 16 if args.quick else 32, 512 if args.quick else 1024)
    predict = [prediction_speed(model_dir, volume, output) for output in ("labels", "instances")]
    for row in predict:
        log(f"predict {row['output']} {row['shape']}: {row['slices_per_s']:.2f} slices/s ({row['wall_s']:.1f} s)")

    report = markdown_table(
        ["batch", "patch", "precision (asked)", "device", "patches/s", "steps/s", "data wait %", "GPU peak (MiB)",
         "first batch (s)"],
        [[f"{r['batch']}{' (auto)' if r['auto_sizes'] else ''}", r["patch"], f"{r['precision']} ({r['precision_asked']})",
          r["device"], r["patches_per_s"], r["steps_per_s"], 100 * r["data_wait_share"], fmt(r["gpu_peak_mb"], 0),
          r["seconds_to_first_batch"]] for r in speed])
    report += "\n\n" + markdown_table(["output", "shape", "slices/s", "wall (s)", "first slice (s)"],
                                      [[r["output"], r["shape"], r["slices_per_s"], r["wall_s"], r["first_slice_s"]]
                                       for r in predict])
    rows = []
    for name, res in objects.items():
        base = res["baseline"]["watershed 3-D"]
        rows.append([name, res["training"]["train_s"], res["training"]["epochs"], res["unet"]["adapted_rand_error"],
                     res["unet"]["f1"], base["adapted_rand_error"], base["f1"]])
    report += "\n\n" + markdown_table(["stack", "train (s)", "epochs", "U-Net ARE", "U-Net F1", "baseline ARE",
                                       "baseline F1"], rows)
    print(report)
    on_gpu = all(r["device"].startswith("GPU") for r in speed)
    tag = ("gpu" if on_gpu else "cpu") + ("_quick" if args.quick else "")
    write_text(args.out / f"{tag}_table.md", f"nvidia-smi: {facts['nvidia_smi']}\n\n{report}\n")
    write_json(args.out / f"{tag}.json", {"facts": facts, "training_speed": speed, "prediction_speed": predict,
                                          "objects": objects})
    return 0


if __name__ == "__main__":
    sys.exit(main())
