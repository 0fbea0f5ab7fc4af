"""How long until a job shows its first result: a one-job worker (cold) vs the warm worker.

Times from ``Job.start()`` to the first training batch and to the first segmented slice, on the
plugin's sample (synthetic cells):

- cold: a one-job worker, as the command line uses (new interpreter, Keras import, model load);
- after warm-up: the session's warm worker once a dock opened it and imported Keras;
- warm, second: the next job on the same worker (the napari session's usual case);
- prediction: the first on the warm worker loads the model, the second finds it in memory.

    python benchmarks/startup.py --out bench_output

Writes ``startup.json`` and ``startup_table.md`` to ``--out``. This process plays napari's
part: it never imports Keras.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import log, machine_info, markdown_table, write_json, write_text  # noqa: E402

from napari_unet.core import events  # noqa: E402
from napari_unet.core.config import ModelConfig, PredictConfig, TrainConfig  # noqa: E402
from napari_unet.samples.synthetic import make_cells_volume  # noqa: E402
from napari_unet.runtime.engine import Job  # noqa: E402
from napari_unet.runtime.jobs.predict import start_prediction  # noqa: E402
from napari_unet.runtime.jobs.train import start_training  # noqa: E402
from napari_unet.runtime.runner import run_to_end  # noqa: E402
from napari_unet.runtime.spawning import worker_env  # noqa: E402
from napari_unet.runtime.warm import WARM_UP_TARGET, WarmWorker  # noqa: E402

TARGET_WARM_S = 2.0


def time_to_first(job, kind) -> tuple[float, events.Final]:
    """Start ``job``; seconds until its first event of type ``kind``, and its final event."""
    first = {}
    start = time.perf_counter()

    def on_event(event):
        if isinstance(event, kind) and "at" not in first:
            first["at"] = time.perf_counter() - start

    with job.start():
        final = run_to_end(job, on_event=on_event, timeout=900, idle_s=0.005)
    if "at" not in first:
        raise RuntimeError(f"{job.target} ended without a {kind.__name__} event: {final}")
    return first["at"], final


def train(data, out_dir, worker=None):
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=4, patch_size=64, val_fraction=0.0)
    job = start_training(data["image"], data["labels"], model_cfg=ModelConfig(), train_cfg=cfg, out_dir=str(out_dir),
                         worker=worker)
    return time_to_first(job, events.Batch)


def predict(data, model_dir, worker=None):
    job = start_prediction(data["image"], str(model_dir), predict_cfg=PredictConfig(), worker=worker)
    return time_to_first(job, events.Slice)


def measure(root: Path) -> dict:
    data = make_cells_volume()
    figures = {}
    log(f"cold training (one-job worker) on {data['image'].shape}")
    figures["train_cold_s"], final = train(data, root / "cold")
    model = final.training.model_dir
    log("cold prediction")
    figures["predict_cold_s"], _ = predict(data, model)
    warm = WarmWorker()
    try:
        started = time.perf_counter()
        warm.prewarm(worker_env()).join()
        # A second warm-up queues behind the first: when it is done, so is the dock's warm-up.
        run_to_end(Job(WARM_UP_TARGET, {}, env=worker_env(), worker=warm).start(), timeout=900)
        figures["warm_up_s"] = time.perf_counter() - started
        for name in ("train_after_warm_up_s", "train_warm_second_s"):
            log(name)
            figures[name], _ = train(data, root / name, worker=warm)
        for name in ("predict_warm_first_s", "predict_warm_second_s"):
            log(name)
            figures[name], _ = predict(data, model, worker=warm)
        figures["warm_worker_processes"] = warm.starts
    finally:
        warm.close()
    return figures


def report(figures: dict, out: Path) -> str:
    rows = [
        ["first training batch", figures["train_cold_s"], figures["train_after_warm_up_s"],
         figures["train_warm_second_s"]],
        ["first segmented slice", figures["predict_cold_s"], figures["predict_warm_first_s"],
         figures["predict_warm_second_s"]],
    ]
    table = markdown_table(["seconds to the", "cold (one-job worker)", "warm: first job", "warm: next job"],
                           [[r[0]] + [f"{v:.2f}" for v in r[1:]] for r in rows])
    met = all(r[3] < TARGET_WARM_S for r in rows)
    text = (f"{table}\n\nFrom Job.start() to the first event, on the sample stack {figures['shape']}. The dock's "
            f"warm-up (worker start + Keras import) took {figures['warm_up_s']:.1f} s in the background. "
            f"Target for a second job on the warm worker: < {TARGET_WARM_S:g} s: {'met' if met else 'NOT met'}. "
            f"The first prediction on the warm worker loads the model; the next finds it in memory.")
    write_json(out / "startup.json", {"benchmark": "startup", "machine": machine_info(), **figures,
                                      "target_warm_s": TARGET_WARM_S, "meets_target": met})
    write_text(out / "startup_table.md", text + "\n")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_output"), help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="napari-unet-startup-"))
    try:
        figures = measure(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures["shape"] = list(make_cells_volume()["image"].shape)
    print("\n" + report(figures, args.out) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
