"""How long training waits for its batches: made in the step (prefetch 0) or ahead in a thread.

For each size (the default batch 4 x 96 px, and a GPU-sized 16 x 256 px) the synthetic cells
are trained for two epochs through the engine, with batches made in the training step and
made 2 ahead in a background thread; the second epoch gives the patches/s of the steps and
the share of the epoch spent waiting for data (``data_wait_share`` of the epoch event).

    python benchmarks/data_wait.py --steps 30 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import log, markdown_table, write_json, write_text  # noqa: E402
from gpu import training_speed  # noqa: E402
from objects import synthetic_stack  # noqa: E402

SIZES = [(4, 96), (16, 256)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="steps per epoch (two epochs)")
    parser.add_argument("--out", type=Path, default=Path("bench_output"))
    args = parser.parse_args(argv)
    cells = synthetic_stack("cells")
    rows = []
    for batch, patch in SIZES:
        for prefetch in (0, 2):
            row = training_speed(cells, batch, patch, "off", args.steps, Path("/tmp/napari_unet_data_wait"), prefetch)
            log(f"{batch} x {patch}px, prefetch {prefetch}: {row['patches_per_s']:.1f} patches/s, "
                f"data wait {100 * row['data_wait_share']:.1f} % of the epoch")
            rows.append(row)
    text = markdown_table(["batch", "patch", "prefetch", "device", "patches/s", "ms/step", "data wait (% of epoch)"],
                          [[r["batch"], r["patch"], r["prefetch"], r["device"], r["patches_per_s"], r["step_ms"],
                            100 * r["data_wait_share"]] for r in rows])
    print(text)
    write_text(args.out / "data_wait_table.md", text + "\n")
    write_json(args.out / "data_wait.json", {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
