"""Prediction on dask.distributed (``predict --workers N``): the same labels as one process, and
throughput and memory per worker on a large, lazily opened stack.

(a) Equivalence: a quick model (``--train-seconds``, or ``--model DIR``) segments the built-in
    synthetic nuclei (32 x 256 x 256) and ISBI 2012's train volume (30 x 512 x 512, ``--data``)
    in one process (the engine's worker, as ``predict`` without ``--workers``) and on a local
    cluster of 2 worker processes, as classes and as 3-D objects, in blocks of
    ``--block-slices``; counts the voxels whose labels differ.
(b) Throughput: a uint8 TIFF stack of ``--size-gb`` (2048 x 2048 slices, as
    ``benchmarks/memory.py`` writes it) opened lazily, segmented (classes) by a tiny model in
    one process and on clusters of 1 and 2 workers: seconds, MB/s, peak RSS of each worker
    (psutil over the worker pids), where the block time goes (read / predict / write / other),
    and a projection from the per-block time to N machines.

    python benchmarks/distributed.py --data ../shared/data/isbi2012 --size-gb 0.25

Writes ``distributed.json`` and ``distributed_table.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import tifffile

# This script's name is the package's: import dask.distributed before its folder is on the path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
importlib.import_module("distributed")
sys.path.insert(0, str(_HERE))

from _common import (  # noqa: E402
    DEFAULT_DATA, MB, keras_helper, log, machine_info, markdown_table, run_engine_job, write_json, write_text,
)
from memory import write_stack  # noqa: E402

from napari_unet.core.config import ModelConfig, PredictConfig, TrainConfig  # noqa: E402
from napari_unet.io import omezarr  # noqa: E402
from napari_unet.runtime import cluster  # noqa: E402
from napari_unet.runtime.jobs.predict import start_prediction  # noqa: E402
from napari_unet.runtime.jobs.train import start_training  # noqa: E402
from napari_unet.runtime.shm import LazyFile  # noqa: E402

GB = 1024**3


class PidSampler:
    """Peak resident memory of each of ``pids``, sampled every ``interval`` s in a thread."""

    def __init__(self, pids, interval=0.2):
        self.peaks = {pid: 0 for pid in pids}
        self._stop, self.interval = threading.Event(), interval
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while True:
            for pid in self.peaks:
                try:
                    self.peaks[pid] = max(self.peaks[pid], psutil.Process(pid).memory_info().rss)
                except psutil.Error:
                    pass
            if self._stop.wait(self.interval):
                return


def train_quick(image, labels, folder: Path, seconds: float, instances: bool) -> str:
    """A model trained for ``seconds`` in the engine's worker (this process never loads Keras)."""
    cfg = TrainConfig(max_seconds=seconds, epochs=1000, instances=instances, early_stopping_patience=1000)
    job = start_training(image, labels, model_cfg=ModelConfig(n_classes=3 if instances else 1), train_cfg=cfg,
                         out_dir=str(folder), overwrite=True)
    run = run_engine_job(job)
    if run["final"]["type"] != "done":
        raise RuntimeError(f"Training ended with {run['final']}")
    return str(folder)


def single(image_path, model, cfg, out: Path) -> dict:
    """One process (the engine's worker, as ``predict`` without ``--workers``) into a zarr."""
    job = start_prediction(LazyFile(str(image_path)), model, predict_cfg=cfg, out_path=str(out))
    run = run_engine_job(job)
    return {"out": out, "seconds": run["wall_s"], "peak_rss_mb": [run["peak_rss_worker_mb"]]}


def on_cluster(client, image_path, model, cfg, out: Path) -> dict:
    """``predict_distributed`` on ``client``'s workers, their peak RSS sampled meanwhile."""
    pids = client.run(os.getpid)
    with PidSampler(pids.values()) as rss:
        summary = cluster.predict_distributed(image_path, model, out=out, cfg=cfg, client=client, on_message=log)
    return {"out": out, "seconds": summary["seconds"], "summary": summary,
            "peak_rss_mb": [rss.peaks[pid] / MB for pid in pids.values()]}


def take_labels(run) -> np.ndarray:
    """The run's output read into memory, and its folder removed."""
    labels = np.asarray(omezarr.open_lazy(run["out"])[0])
    shutil.rmtree(run["out"], ignore_errors=True)
    return labels


def count_differing(a: Path, b: Path) -> int:
    """Voxels that differ between two zarr outputs, compared chunk by chunk (too large to load)."""
    return int((omezarr.open_lazy(a)[0] != omezarr.open_lazy(b)[0]).sum().compute())


# ------------------------------------------------------------------ (a) equivalence


def partition_differences(a, b) -> dict:
    """Label arrays compared up to renumbering: voxels outside the best-matching partner of their
    object (worse of both directions), and objects of ``a`` equal voxel for voxel to one of ``b``."""
    a, b = a.ravel().astype(np.uint64), b.ravel().astype(np.uint64)
    pairs, counts = np.unique(a * (b.max() + 1) + b, return_counts=True)
    ia, ib = pairs // (b.max() + 1), pairs % (b.max() + 1)
    missed = []
    for first in (ia, ib):
        best = np.zeros(int(first.max()) + 1)
        np.maximum.at(best, first.astype(np.int64), counts)
        missed.append(int(a.size - best.sum()))
    size_a, size_b = np.bincount(a.astype(np.int64)), np.bincount(b.astype(np.int64))
    same = (counts == size_a[ia.astype(np.int64)]) & (counts == size_b[ib.astype(np.int64)]) & (ia > 0)
    return {"voxels_not_matched": max(missed), "identical_objects": int(same.sum())}


def stacks(data_dir: Path, folder: Path, seconds: float, model_dir) -> list:
    """(name, image path, model folder, voxel size) of the synthetic nuclei and ISBI 2012."""
    from napari_unet.samples.synthetic import make_nuclei_volume

    nuclei = make_nuclei_volume(seed=0)
    labels = np.zeros(nuclei["instances"].shape, np.uint32)
    labels[list(nuclei["annotated_slices"])] = nuclei["instances"][list(nuclei["annotated_slices"])]
    tifffile.imwrite(folder / "nuclei.tif", nuclei["image"])
    out = [("synthetic nuclei 32x256x256", folder / "nuclei.tif", model_dir or train_quick(
        nuclei["image"], labels, folder / "nuclei-model", seconds, instances=True), tuple(nuclei["scale"]))]
    isbi = data_dir / "train-volume.tif"
    if isbi.is_file():
        image = tifffile.imread(isbi)
        cells = np.zeros(image.shape, np.uint8)
        cells[:20] = tifffile.imread(data_dir / "train-labels.tif")[:20] != 0
        model = model_dir or train_quick(image, cells, folder / "isbi-model", seconds, instances=False)
        out.append(("ISBI 2012 train 30x512x512", isbi, model, None))
        # With its voxel size (50 nm sections, 4 nm pixels) "auto" objects are linked per slice.
        out.append(("ISBI 2012, voxel size 50 x 4 x 4 nm", isbi, model, (50.0, 4.0, 4.0)))
    else:
        log(f"no ISBI 2012 data in {data_dir}: skipped (pass --data)")
    return out


def equivalence(client, data_dir, folder, seconds, block_slices, model_dir) -> list:
    rows = []
    for name, image, model, voxel in stacks(data_dir, folder, seconds, model_dir):
        for output in ("labels", "instances"):
            cfg = PredictConfig(output=output, block_slices=block_slices, voxel_size=voxel or ())
            log(f"{name}, {output}: one process, then 2 workers")
            one = single(image, model, cfg, folder / "single.zarr")
            two = on_cluster(client, image, model, cfg, folder / "two.ome.zarr")
            one["labels"], two["labels"] = take_labels(one), take_labels(two)
            summary = two["summary"]
            rows.append({"stack": name, "output": output, "block_slices": block_slices,
                         "blocks": summary["n_blocks"], "tiles": summary["n_tiles"], "voxels": int(one["labels"].size),
                         "differing_voxels": int(np.count_nonzero(one["labels"] != two["labels"])),
                         **partition_differences(one["labels"], two["labels"]),
                         "objects_single": int(len(np.unique(one["labels"])) - 1),
                         "objects_cluster": int(len(np.unique(two["labels"])) - 1),
                         "single_s": one["seconds"], "cluster_s": two["seconds"],
                         "merge_s": summary["merge_seconds"]})
            log(f"  differing voxels: {rows[-1]['differing_voxels']} of {rows[-1]['voxels']}")
    return rows


# ------------------------------------------------------------------ (b) throughput


def stages(summary) -> dict:
    """Seconds summed over the blocks: reading, predicting, writing, the rest (objects, sample, set-up)."""
    blocks = summary["blocks"]
    total = {key: sum(b[key] for b in blocks) for key in ("read", "predict", "write", "total")}
    total["other"] = total["total"] - total["read"] - total["predict"] - total["write"]
    return total


def throughput(folder: Path, size_gb: float, slice_size: int, block_slices: int, output: str = "labels") -> list:
    n_slices = max(1, round(size_gb * GB / slice_size**2))
    stack = folder / "stack.tif"
    log(f"writing {n_slices} slices of {slice_size} x {slice_size} ({size_gb:g} GB) to {stack}")
    write_stack(stack, n_slices, slice_size)
    import _keras_tasks as tasks

    with keras_helper() as helper:
        make = tasks.make_tiny_instance_bundle if output == "instances" else tasks.make_tiny_bundle
        model = helper.submit(make, str(folder / "tiny-model")).result()
    cfg = PredictConfig(output=output, block_slices=block_slices)
    log("one process")
    rows, reference = [], single(stack, model, cfg, folder / "single.zarr")
    rows.append(_throughput_row("one process (engine)", reference, n_slices, stack, None, output))
    for workers in (1, 2):
        log(f"local cluster of {workers} worker(s)")
        with cluster.connect(workers=workers) as client:
            run = on_cluster(client, stack, model, cfg, folder / "cluster.zarr")
        rows.append(_throughput_row(f"{workers} worker(s)", run, n_slices, stack, reference["out"], output))
        shutil.rmtree(run["out"], ignore_errors=True)
    shutil.rmtree(reference["out"], ignore_errors=True)
    stack.unlink()
    return rows


def _throughput_row(name, run, n_slices, stack, reference, output) -> dict:
    row = {"run": name, "output": output, "slices": n_slices, "size_gb": stack.stat().st_size / GB,
           "seconds": run["seconds"], "mb_per_s": stack.stat().st_size / MB / run["seconds"],
           "peak_rss_mb": run["peak_rss_mb"]}
    if reference is not None:
        summary = run["summary"]
        row.update(blocks=summary["n_blocks"], stages=stages(summary),
                   block_s=[b["total"] for b in summary["blocks"]],
                   differing_voxels=count_differing(run["out"], reference))
    log(f"  {row['seconds']:.1f} s, {row['mb_per_s']:.2f} MB/s, peak RSS {row['peak_rss_mb']}")
    return row


def projection(row, machines=(1, 2, 4, 8, 16)) -> dict:
    """Seconds on N machines of this speed (one worker each), from one worker's run: the fixed
    part (start, sample, joining) plus ceil(blocks / N) blocks of the mean block time."""
    per_block = float(np.mean(row["block_s"]))
    fixed = max(row["seconds"] - sum(row["block_s"]), 0.0)
    return {n: fixed + math.ceil(row["blocks"] / n) * per_block for n in machines}


# ------------------------------------------------------------------ report


def report(equal_rows, speed_rows) -> str:
    text = "" if not equal_rows else "### (a) 2 workers vs one process\n\n" + markdown_table(
        ["stack", "output", "blocks x Y/X tiles", "differing voxels", "voxels off, ids aside",
         "objects: one / 2 workers / identical", "one process (s)", "2 workers (s)", "of which joining (s)"],
        [[r["stack"], r["output"], f"{r['blocks']} x {r['tiles']}",
          f"{r['differing_voxels']} of {r['voxels']}", r["voxels_not_matched"],
          f"{r['objects_single']} / {r['objects_cluster']} / {r['identical_objects']}"
          if r["output"] == "instances" else "-",
          f"{r['single_s']:.1f}", f"{r['cluster_s']:.1f}", f"{r['merge_s']:.1f}" if r["merge_s"] else "-"]
         for r in equal_rows])
    what = "3-D objects" if speed_rows[0].get("output") == "instances" else "classes"
    text += f"\n\n### (b) throughput, {what}, lazily read uint8 TIFF\n\n" + markdown_table(
        ["run", "stack (GB)", "slices", "blocks", "seconds", "MB/s", "peak RSS per worker (MB)",
         "block time: read / predict / write / other (s)", "differing voxels vs one process"],
        [[r["run"], f"{r['size_gb']:.3g}", r["slices"], r.get("blocks", "-"), f"{r['seconds']:.1f}",
          f"{r['mb_per_s']:.2f}", " / ".join(f"{m:.0f}" for m in r["peak_rss_mb"]),
          " / ".join(f"{r['stages'][k]:.1f}" for k in ("read", "predict", "write", "other")) if "stages" in r else "-",
          r.get("differing_voxels", "-")] for r in speed_rows])
    one = next(r for r in speed_rows if r["run"] == "1 worker(s)")
    text += ("\n\nProjection from the 1-worker run's mean block time "
             f"({np.mean(one['block_s']):.1f} s for {one['blocks']} blocks) to N machines of this speed: "
             + ", ".join(f"N={n}: {s:.0f} s" for n, s in projection(one).items()) + ".")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ISBI 2012 folder (default: %(default)s)")
    parser.add_argument("--model", default=None, help="model folder for (a) (default: train quick models)")
    parser.add_argument("--train-seconds", type=float, default=60.0, help="training time of each quick model")
    parser.add_argument("--block-slices", type=int, default=8, help="slices per block (default: %(default)s)")
    parser.add_argument("--size-gb", type=float, default=1.0, help="throughput stack size (default: %(default)s)")
    parser.add_argument("--slice-size", type=int, default=2048)
    parser.add_argument("--tmp", type=Path, default=None, help="folder for temporary files")
    parser.add_argument("--out", type=Path, default=Path("bench_output"))
    parser.add_argument("--throughput-only", action="store_true", help="skip (a), the equivalence on small stacks")
    parser.add_argument("--throughput-output", choices=("labels", "instances"), default="labels",
                        help="(b) segments classes (default) or 3-D objects of a tiny instance model")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="napari-unet-distributed-", dir=args.tmp))
    started = time.perf_counter()
    try:
        equal_rows = []
        if not args.throughput_only:
            with cluster.connect(workers=2) as client:
                equal_rows = equivalence(client, args.data, folder, args.train_seconds, args.block_slices,
                                         args.model)
        speed_rows = throughput(folder, args.size_gb, args.slice_size, args.block_slices, args.throughput_output)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    text = report(equal_rows, speed_rows)
    write_json(args.out / "distributed.json", {
        "benchmark": "distributed", "machine": machine_info(), "equivalence": equal_rows,
        "throughput": speed_rows, "projection_s": projection(speed_rows[1]),
        "total_s": time.perf_counter() - started, "table_markdown": text})
    write_text(args.out / "distributed_table.md", text + "\n")
    print("\n" + text + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
