"""Run every benchmark and gather their tables in ``<out>/report.md``.

    python benchmarks/run_all.py --data ../shared/data/isbi2012 --minutes 10 --out bench_output

Each benchmark runs in its own process, so that one's memory does not show up in the
next one's figures: ``isbi.py`` (accuracy and speed of two recipes), ``memory.py``
(prediction memory and time against volume size) and ``responsiveness.py`` (napari's
event loop while the Train widget trains).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import DEFAULT_DATA, log, write_text  # noqa: E402

BENCHMARKS = ("isbi", "memory", "responsiveness")
TITLES = {
    "isbi": "Accuracy and speed on ISBI 2012",
    "memory": "Prediction memory and time against volume size",
    "responsiveness": "napari responsiveness while training",
}


def commands(args) -> dict:
    py = [sys.executable, "-u"]
    out = ["--out", str(args.out)]
    isbi = py + [str(HERE / "isbi.py"), "--data", str(args.data), "--minutes", str(args.minutes)] + out
    if not args.tta:
        isbi.append("--no-tta")
    memory = py + [str(HERE / "memory.py"), "--sizes-gb", *map(str, args.memory_sizes_gb),
                   "--slice-size", str(args.slice_size)] + out
    if args.tmp:
        memory += ["--tmp", str(args.tmp)]
    responsiveness = py + [str(HERE / "responsiveness.py"), "--seconds", str(args.responsiveness_seconds)] + out
    return {"isbi": isbi, "memory": memory, "responsiveness": responsiveness}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ISBI 2012 folder (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per recipe (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("bench_output"), help="output folder")
    parser.add_argument("--no-tta", dest="tta", action="store_false", help="skip the prediction with TTA")
    parser.add_argument("--memory-sizes-gb", type=float, nargs="+", default=[0.25, 1.0, 4.0],
                        help="stack sizes for memory.py (default: %(default)s)")
    parser.add_argument("--slice-size", type=int, default=2048, help="slice size for memory.py (default: %(default)s)")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for memory.py's temporary stacks")
    parser.add_argument("--responsiveness-seconds", type=float, default=60.0,
                        help="training time for responsiveness.py (default: %(default)s)")
    parser.add_argument("--skip", nargs="+", choices=BENCHMARKS, default=[], help="benchmarks to leave out")
    args = parser.parse_args(argv)
    args.out = args.out.absolute()
    args.out.mkdir(parents=True, exist_ok=True)

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    failed, sections = [], []
    for name, command in commands(args).items():
        if name in args.skip:
            continue
        log(f"=== {name}: {' '.join(command)}")
        start = time.perf_counter()
        code = subprocess.run(command, env=env).returncode
        log(f"=== {name} finished with exit code {code} after {time.perf_counter() - start:.0f} s")
        table = args.out / f"{name}_table.md"
        if code != 0 or not table.is_file():
            failed.append(name)
            sections.append(f"## {TITLES[name]}\n\nFailed (exit code {code}); see the console output.\n")
            continue
        extra = "\n![Dice against training time](isbi_dice_vs_time.png)\n" if name == "isbi" else ""
        sections.append(f"## {TITLES[name]}\n\n{table.read_text(encoding='utf-8')}{extra}")

    report = args.out / "report.md"
    write_text(report, "# napari-unet benchmarks\n\n" + "\n".join(sections))
    print("\n" + report.read_text(encoding="utf-8"), flush=True)
    log(f"wrote {report}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
