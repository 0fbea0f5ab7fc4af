"""Ctrl-C while ``napari-unet`` starts: what the user sees at each moment.

Starts the console script (default ``napari-unet predict --help``: it imports the option parser,
NumPy, SciPy and scikit-image, as every command does) and sends SIGINT to its process group, as a
terminal does, ``offset`` ms after the process was started: every ``--fine-step`` ms up to
``--fine-ms``, then every ``--coarse-step`` ms up to ``--coarse-ms``, ``--repeats`` times each.
Counts per offset the runs that ended in one stderr line, a traceback of the console script, a
``Fatal Python error`` (Python's own start-up: its streams, ``site`` and the ``.pth`` files), more
than one stderr line, a silent kill (the signal came before Python set up its own handler) and the
command finishing first; then where each traceback came from.

    python benchmarks/startup_signals.py [--repeats 3] [--out benchmarks/results/startup_signals.md]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

KINDS = ("one line", "traceback", "start-up error", "lines > 1", "silent", "finished")


def offsets_ms(fine_ms: int, fine_step: int, coarse_ms: int, coarse_step: int) -> list[int]:
    fine = list(range(0, fine_ms + 1, fine_step))
    return fine + list(range(fine[-1] + coarse_step, coarse_ms + 1, coarse_step))


def run_once(command: list[str], offset_s: float) -> tuple[str, int, str]:
    """One start, SIGINT to the group after ``offset_s``; returns (kind, exit status, stderr)."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    started = time.perf_counter()  # Popen returns once the interpreter was exec'd
    time.sleep(max(0.0, started + offset_s - time.perf_counter()))
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:  # it has ended (and been reaped by no one yet: rare)
        pass
    _, err = proc.communicate(timeout=120)
    return classify(proc.returncode, err), proc.returncode, err


def classify(rc: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    if "Traceback" in err:
        return "start-up error" if "Fatal Python error" in err else "traceback"
    if rc == -signal.SIGINT and not lines:
        return "silent"
    if len(lines) > 1:
        return "lines > 1"
    return "one line" if lines and rc != 0 else "finished"


def where(err: str) -> str:
    """Python's failing start-up step, or a traceback's two innermost frames: what ran when the signal came."""
    fatal = re.search(r"Fatal Python error: (\w+)", err)
    if fatal:
        return fatal[1]
    frames = re.findall(r'File "([^"]+)", line (\d+)', err)
    return " < ".join(f"{Path(name).name}:{line}" for name, line in reversed(frames[-2:])) or "?"


def sweep(command: list[str], offsets: list[int], repeats: int) -> dict:
    """``{offset: Counter(kind) + Counter('rc N')}``, the offsets interleaved over the repeats."""
    table, examples, places = {ms: collections.Counter() for ms in offsets}, {}, collections.Counter()
    for _ in range(repeats):
        for ms in offsets:
            kind, rc, err = run_once(command, ms / 1000)
            table[ms][kind] += 1
            table[ms][f"rc {rc}"] += 1
            examples.setdefault(kind, (ms, rc, err))
            if kind in ("traceback", "start-up error"):
                places[f"{kind}: {where(err)}"] += 1
    return {"table": table, "examples": examples, "places": places}


def markdown(command: list[str], entry: str, result: dict, repeats: int) -> str:
    rows = [f"Command: `{' '.join(command)}` (entry: `{entry}`); {repeats} run(s) per offset; "
            f"{os.cpu_count()} CPU core(s); offsets from the process's start.", "",
            "| offset ms | " + " | ".join(KINDS) + " | exit statuses |",
            "|---:|" + "---:|" * len(KINDS) + "---|"]
    for ms, counts in result["table"].items():
        statuses = ", ".join(f"{key[3:]}: {n}" for key, n in sorted(counts.items()) if key.startswith("rc "))
        rows.append(f"| {ms} | " + " | ".join(str(counts[kind] or "") for kind in KINDS) + f" | {statuses} |")
    totals = sum(result["table"].values(), collections.Counter())
    rows += ["", "Totals: " + ", ".join(f"{kind} {totals[kind]}" for kind in KINDS)]
    bad = [ms for ms, counts in result["table"].items()
           if counts["traceback"] or counts["lines > 1"]]
    rows.append(f"Offsets with a traceback or several lines after Python's start-up: {bad or 'none'}")
    rows += [f"- {n} x {place}" for place, n in result["places"].most_common()]
    for kind, (ms, rc, err) in result["examples"].items():
        if kind != "finished":
            first = err.strip().splitlines()
            rows.append(f"- {kind} (first at {ms} ms, exit {rc}): `{first[0] if first else ''}`"
                        + (f" ... `{first[-1]}` ({len(first)} lines)" if len(first) > 1 else ""))
    return "\n".join(rows) + "\n"


def console_entry(script: Path) -> str:
    """The ``from module import function`` line of the console script, to say which entry ran."""
    found = re.search(r"^from (\S+) import (\S+)", script.read_text(), re.M)
    return f"{found[1]}:{found[2]}" if found else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", type=Path, default=Path(sys.executable).with_name("napari-unet"))
    parser.add_argument("--args", default="predict --help", help="the command's arguments")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fine-ms", type=int, default=100)
    parser.add_argument("--fine-step", type=int, default=2)
    parser.add_argument("--coarse-ms", type=int, default=1500)
    parser.add_argument("--coarse-step", type=int, default=20)
    parser.add_argument("--out", type=Path, help="also write the table to this .md file")
    args = parser.parse_args()
    command = [str(args.script), *args.args.split()]
    offsets = offsets_ms(args.fine_ms, args.fine_step, args.coarse_ms, args.coarse_step)
    started = time.perf_counter()
    text = markdown(command, console_entry(args.script), sweep(command, offsets, args.repeats), args.repeats)
    text += f"\n{len(offsets) * args.repeats} runs in {time.perf_counter() - started:.0f} s\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
