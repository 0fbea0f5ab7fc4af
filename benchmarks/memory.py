"""Prediction memory and time against volume size, on stacks larger than memory would allow.

For each size, writes a uint8 TIFF stack of ``--slice-size``^2 slices into a temporary
folder, segments it with a tiny model through the engine, opened lazily by the worker
(``shm.LazyFile``) and written into a zarr array on disk, and records the time and the
peak resident memory of the worker and of this (parent) process. Files are deleted after.

    python benchmarks/memory.py --sizes-gb 0.25 1 4 --out bench_output
    python benchmarks/memory.py --output instances --sizes-gb 0.25 --out bench_output

``--output labels`` (default): class labels from a tiny binary model; writes ``memory.json``
and ``memory_table.md`` to ``--out``. ``--output instances``: 3-D objects (voxel size 1, 1, 1)
from a tiny instance model (background, interior, boundary); writes ``memory_instances.json``
and ``memory_instances_table.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    MB,
    keras_helper,
    log,
    machine_info,
    markdown_table,
    run_engine_job,
    write_json,
    write_text,
)

from napari_unet.runtime.jobs.predict import start_prediction  # noqa: E402
from napari_unet.runtime.shm import LazyFile  # noqa: E402
from napari_unet.core.config import PredictConfig  # noqa: E402

GB = 1024**3
TARGET_PEAK_GB = 1.5  # for the largest stack, worker RSS
SPARE_BYTES = GB // 2


def write_stack(path: Path, n_slices: int, size: int, seed: int = 0) -> float:
    """An uncompressed BigTIFF of ``n_slices`` textured uint8 slices; returns the seconds taken."""
    import tifffile
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    # A few textured slices, cycled: realistic enough to run a model on, cheap to write.
    bases = [gaussian_filter(rng.random((size, size), np.float32), 3) for _ in range(4)]
    bases = [((b - b.min()) / (np.ptp(b) or 1) * 255).astype(np.uint8) for b in bases]
    start = time.perf_counter()
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write((bases[i % len(bases)] for i in range(n_slices)), shape=(n_slices, size, size),
                  dtype=np.uint8, photometric="minisblack")
    return time.perf_counter() - start


def check_disk(folder: Path, sizes_gb) -> None:
    free = shutil.disk_usage(folder).free
    need = max(sizes_gb) * GB * 1.3 + SPARE_BYTES  # the stack, its predicted labels, some room
    if free < need:
        raise ValueError(
            f"{folder} has {free / GB:.1f} GB free but the largest stack needs about {need / GB:.1f} GB: "
            "pass smaller --sizes-gb or another --tmp folder."
        )


OUTPUTS = ("labels", "instances")


def predict_config(output: str) -> PredictConfig:
    # Instances: the default "auto" objects with no voxel size, i.e. true 3-D objects.
    return PredictConfig(output=output)


def result_stem(output: str) -> str:
    return "memory" if output == "labels" else f"memory_{output}"


def measure(model_dir: str, folder: Path, size_gb: float, slice_size: int, output: str = "labels") -> dict:
    n_slices = max(1, round(size_gb * GB / slice_size**2))
    stack, out = folder / f"stack_{size_gb:g}gb.tif", folder / f"labels_{size_gb:g}gb.zarr"
    log(f"{size_gb:g} GB: writing {n_slices} slices of {slice_size} x {slice_size} to {stack}")
    write_s = write_stack(stack, n_slices, slice_size)
    nbytes = stack.stat().st_size
    try:
        progress = {"next": time.perf_counter() + 10}

        def on_event(event):
            if event["type"] == "slice" and time.perf_counter() >= progress["next"]:
                progress["next"] = time.perf_counter() + 10
                log(f"{size_gb:g} GB: slice {event['index'] + 1}/{event['n_slices']}")

        job = start_prediction(LazyFile(str(stack)), model_dir, predict_cfg=predict_config(output), out_path=str(out))
        run = run_engine_job(job, on_event)
        done = run["final"]
        if done["type"] != "done" or done.get("n_slices") != n_slices:
            raise RuntimeError(f"Prediction of {stack} ended with {done}")
        first = next(e["t"] for e in run["events"] if e["type"] == "slice")
    finally:
        stack.unlink(missing_ok=True)
        shutil.rmtree(out, ignore_errors=True)
    result = {
        "output": output,
        "size_gb": nbytes / GB,
        "n_slices": n_slices,
        "slice_shape": [slice_size, slice_size],
        "write_s": write_s,
        "predict_s": run["wall_s"],
        "first_slice_s": first,  # worker start, model loading, graph building
        "s_per_slice_after_first": (run["wall_s"] - first) / max(1, n_slices - 1),
        "mb_per_s": nbytes / MB / run["wall_s"],
        "peak_rss_worker_mb": run["peak_rss_worker_mb"],
        "peak_rss_parent_mb": run["peak_rss_parent_mb"],
    }
    log(f"{size_gb:g} GB: {result['predict_s']:.1f} s, worker peak {result['peak_rss_worker_mb']:.0f} MB, "
        f"parent peak {result['peak_rss_parent_mb']:.0f} MB")
    return result


def summary(rows: list) -> dict:
    """Is memory flat and time linear in the volume size?"""
    sizes = np.array([r["size_gb"] for r in rows])
    times = np.array([r["predict_s"] for r in rows])
    peaks = np.array([r["peak_rss_worker_mb"] for r in rows])
    largest = rows[int(np.argmax(sizes))]
    out = {
        "worker_peak_spread_mb": float(peaks.max() - peaks.min()),
        "largest_worker_peak_gb": largest["peak_rss_worker_mb"] / 1024,
        "target_peak_gb": TARGET_PEAK_GB,
        "meets_target": bool(largest["peak_rss_worker_mb"] / 1024 < TARGET_PEAK_GB),
    }
    if len(rows) >= 2 and np.ptp(sizes) > 0:
        slope, intercept = np.polyfit(sizes, times, 1)
        fitted = slope * sizes + intercept
        residual = float(1 - np.sum((times - fitted) ** 2) / max(np.sum((times - times.mean()) ** 2), 1e-12))
        out.update(seconds_per_gb=float(slope), fixed_seconds=float(intercept), r_squared=residual)
    return out


def table(rows: list, summ: dict, output: str = "labels") -> str:
    header = ["output", "stack (GB)", "slices", "predict (s)", "s/slice", "MB/s", "worker peak RSS (MB)", "parent peak RSS (MB)"]
    body = [[output, f"{r['size_gb']:.3g}", r["n_slices"], f"{r['predict_s']:.1f}", f"{r['s_per_slice_after_first']:.2f}",
             f"{r['mb_per_s']:.1f}", f"{r['peak_rss_worker_mb']:.0f}", f"{r['peak_rss_parent_mb']:.0f}"] for r in rows]
    text = markdown_table(header, body)
    lines = [f"\nWorker peak RSS spread across sizes: {summ['worker_peak_spread_mb']:.0f} MB; "
             f"largest stack: {summ['largest_worker_peak_gb']:.2f} GB "
             f"(target < {TARGET_PEAK_GB} GB: {'met' if summ['meets_target'] else 'NOT met'})."]
    if "seconds_per_gb" in summ:
        lines.append(f"Time ~ {summ['seconds_per_gb']:.1f} s/GB x size + {summ['fixed_seconds']:.1f} s "
                     f"(linear fit R^2 = {summ['r_squared']:.4f}).")
    return text + "\n" + "\n".join(lines)


def run(sizes_gb, out: Path, slice_size: int = 2048, tmp: Path | None = None, output: str = "labels") -> dict:
    if output not in OUTPUTS:
        raise ValueError(f"--output must be one of {', '.join(OUTPUTS)}; got {output!r}.")
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    sizes_gb = sorted(float(s) for s in sizes_gb)
    if not sizes_gb or min(sizes_gb) <= 0:
        raise ValueError(f"--sizes-gb must be positive numbers, got {sizes_gb}.")
    base = Path(tmp or tempfile.gettempdir())
    check_disk(base, sizes_gb)
    folder = Path(tempfile.mkdtemp(prefix="napari-unet-memory-", dir=base))
    try:
        kind = "instance " if output == "instances" else ""
        log(f"training a tiny {kind}model (4 filters, depth 2) in a helper process")
        import _keras_tasks as tasks

        make = tasks.make_tiny_instance_bundle if output == "instances" else tasks.make_tiny_bundle
        with keras_helper() as helper:
            model_dir = helper.submit(make, str(folder / "tiny-model")).result()
        rows = [measure(model_dir, folder, size, slice_size, output) for size in sizes_gb]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    summ = summary(rows)
    text = table(rows, summ, output)
    loaded = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)  # must stay empty, as in napari
    report = {"benchmark": "memory", "output": output, "machine": machine_info(),
              "predict_config": predict_config(output).to_dict(),
              "rows": rows, "summary": summ, "table_markdown": text,
              "tensorflow_or_keras_in_benchmark_process": loaded}
    stem = result_stem(output)
    write_json(out / f"{stem}.json", report)
    write_text(out / f"{stem}_table.md", text + "\n")
    print("\n" + text + "\n", flush=True)
    log(f"wrote {out / f'{stem}.json'} and {out / f'{stem}_table.md'}")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[0.25, 1.0, 4.0],
                        help="stack sizes to test, in GB (default: %(default)s)")
    parser.add_argument("--slice-size", type=int, default=2048,
                        help="slice height and width in pixels (default: %(default)s)")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the temporary stacks (default: system temp)")
    parser.add_argument("--output", choices=OUTPUTS, default="labels",
                        help="class labels, or 3-D objects through the engine (default: %(default)s)")


def main(argv=None) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("bench_output"), help="output folder")
    args = parser.parse_args(argv)
    run(args.sizes_gb, args.out, args.slice_size, args.tmp, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
