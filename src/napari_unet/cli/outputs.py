"""Prediction outputs: refused before any work, written via temporary zarrs, and what a cancelled run keeps."""

from __future__ import annotations

from pathlib import Path

from napari_unet.cli.progress import say_why_unfinished
from napari_unet.io import disk, leftovers, omezarr
from napari_unet.runtime import interrupts
from napari_unet.runtime.jobs.predict import output_nbytes, prediction_outputs

OUTPUT_SUFFIXES = (".tif", ".tiff", ".zarr")


def check_new_output(path, option: str, inputs=()) -> Path:
    """Refuse, before any work, an output that is an input, exists, has no usable suffix, whose
    folder is missing or not writable, or whose name (or a temporary name made from it) is too long."""
    path = Path(path)
    if not path.name.lower().endswith(OUTPUT_SUFFIXES):
        raise ValueError(f"{option} {path} must end in {', '.join(OUTPUT_SUFFIXES)}.")
    disk.check_name_length(path.name, _internal_names(path), path.parent, option)  # first: else lookups fail
    if any(path.resolve() == Path(p).resolve() for p in inputs):
        raise ValueError(f"{option} {path} is one of the inputs; pick a new file name.")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"Output folder {path.parent} does not exist; create it first.")
    disk.check_writable(path.parent, f"{option} {path.name}")
    if path.exists():
        raise FileExistsError(f"{path} exists; pick another name or delete it first.")
    return path


def _internal_names(path: Path) -> list[str]:
    """The longest names a prediction may give ``path``'s files on its way: the temporary zarr,
    the name a cancelled run keeps (``incomplete_name``), and a TIFF's ``.part`` while written."""
    kept = f"{path.name[: -len(path.suffix)]}.{INCOMPLETE}-99{path.suffix}"
    names = [temporary(path).name, kept]
    if path.suffix.lower() != ".zarr":
        names.append(f".{kept}.{'x' * 8}.part")  # tiff._atomic_imwrite's mkstemp name
    return names


def say_written(line: str) -> None:
    """The outputs are whole: a signal that came too late to stop the run changes nothing (exit 0)."""
    late = interrupts.output_whole()
    print(line + (f" ({interrupts.signal_name(late)} came too late to stop it: the output is whole.)"
                  if late is not None else ""))


def refuse_live_outputs(finals: dict) -> None:
    """A temporary group that exists belongs to a live run (a killed run's was reclaimed above),
    so it is refused, never removed."""
    for path, tmp in finals.items():
        if tmp.exists():
            raise FileExistsError(f"{tmp} exists: another run is writing {path} now; wait for it, or delete "
                                  f"{tmp} if no run is.")


def start_outputs(finals: dict, out, axes, scale, units=None) -> None:
    """Each output's temporary group (its array goes to ``tmp/0``)."""
    for path, tmp in finals.items():
        omezarr.start_output(tmp, axes=axes, scale=scale, units=units, labels=path == out, name=path.name)


def reclaim_partial(path) -> None:
    """Remove the unfinished output of a killed run, which would block this one."""
    if path is not None and path.exists() and leftovers.remove_stale_folder(path):
        print(f"Removed {path}, the unfinished output of a killed run.")


def temporary(path: Path) -> Path:
    return path.with_name(path.name + ".partial.zarr")


def check_disk_space(finals: dict, spatial, cfg) -> None:
    """Outputs (uncompressed: the most they take) must fit; a TIFF is written from a temporary zarr
    beside it, so it needs twice that."""
    need = {}
    for path, (shape, dtype) in zip(finals, prediction_outputs(spatial, cfg).values()):
        copies = 1 if path.suffix == ".zarr" else 2
        need[path.parent] = need.get(path.parent, 0) + copies * output_nbytes(shape, dtype)
    n_slices = spatial[cfg.axis] if len(spatial) == 3 else 1
    for folder, nbytes in need.items():
        disk.check_free_space(folder, nbytes, "the outputs")
        # Each output's temporary zarr holds a file per chunk (a slice, or a Y/X part of one).
        disk.check_free_files(folder, len(finals) * (2 * n_slices + FILES_PER_OUTPUT), "the outputs")


FILES_PER_OUTPUT = 16  # a zarr's metadata, owner and scratch files
INCOMPLETE = "incomplete"  # marks the file that keeps a cancelled prediction's finished slices


def incomplete_name(path: Path) -> Path:
    """``mask.tif`` -> ``mask.incomplete.tif`` (``-2``, ``-3``, ... if that exists too)."""
    stem, suffix = path.name[: -len(path.suffix)], path.suffix
    candidate, n = path.with_name(f"{stem}.{INCOMPLETE}{suffix}"), 2
    while candidate.exists():
        candidate, n = path.with_name(f"{stem}.{INCOMPLETE}-{n}{suffix}"), n + 1
    return candidate


def keep_incomplete(done: int, finals: dict, out: Path, scale, n_slices: int, axes=None) -> int:
    """A cancelled run keeps its ``done`` finished slices in files named as incomplete, never the asked names."""
    if done == 0:
        say_why_unfinished("Cancelled before any slice was finished: nothing was written.")
        return 130
    kept = [incomplete_name(path) for path in finals]
    omezarr.finish_outputs([(tmp, where, path == out) for (path, tmp), where in zip(finals.items(), kept)],
                           scale=scale, axes=axes)  # all or nothing, even after a second Ctrl-C
    asked = ", ".join(map(str, finals))
    say_why_unfinished(f"Cancelled after {done} of {n_slices} slices: the finished slices are in "
                       f"{', '.join(map(str, kept))} (the other slices are 0); {asked} "
                       f"{'was' if len(finals) == 1 else 'were'} not written.")
    return 130
