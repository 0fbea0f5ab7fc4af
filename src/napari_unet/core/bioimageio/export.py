"""Export a model folder as a bioimage.io model package (model description format 0.5).

Runs in the worker (it imports Keras and the optional ``bioimageio`` libraries). The package
holds the U-Net wrapped to take ``(batch, channel, y, x)``: keras_v3 weights (TensorFlow
backend named) and, on TensorFlow, a SavedModel child for consumers such as deepImageJ; test
tensors cut from the training image; a cover; Markdown documentation with a ``# Validation``
section; and the model folder's settings under ``config.napari_unet``, so napari-unet predicts
from the package exactly as from the folder. ``bioimageio.core.test_model`` must pass before
the package is moved to its name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core import events
from napari_unet.core.bioimageio.describe import ExportError, describe, run_test, save_package, size_range
from napari_unet.core.bioimageio.package import INNER_MODEL, is_package_path
from napari_unet.core.bundle import load_bundle
from napari_unet.core.bundle_meta import BundleMeta
from napari_unet.core.data import as_zyxc, normalization_from_sample, normalize
from napari_unet.core.nn.export import channels_first_model, write_saved_model
from napari_unet.io import leftovers

EXTRA_HINT = "install the bioimageio extra: pip install 'napari-slice-unet[bioimageio]'"
TEST_SIZE = 256  # the test tensors are at most this wide


def check_libraries() -> None:
    """Raise ``ExportError`` naming the extra when bioimageio.spec/core are missing."""
    import importlib.util

    for name in ("bioimageio.spec", "bioimageio.core"):
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise ExportError(f"Exporting to bioimage.io needs {name}: {EXTRA_HINT}.")


def export_package(model_dir, out_path, *, image, overwrite=False, name=None, authors=(),
                   license="CC-BY-4.0", image_name=None, stop_event=None):
    """Write ``out_path`` (a ``.zip``); a generator of ``events.Stage``, then ``events.Exported``.

    ``image``: the training image (``(Z,) Y, X (, C)``), from which the test tensors are cut.
    """
    check_libraries()
    check_model_folder(model_dir)
    out_path = Path(out_path).absolute()
    check_output(out_path, overwrite)
    yield _stage("Loading the model", 1)
    model, meta = load_bundle(model_dir)
    with tempfile.TemporaryDirectory(prefix="napari-unet-export-") as tmp:
        folder = Path(tmp)
        yield _stage("Writing the weights and test tensors", 2)
        files = _write_files(folder, model, meta, image)
        descr = describe(folder, files, meta, Path(model_dir), name=name, authors=authors,
                         license=license, image_name=image_name)
        yield _stage("Packaging", 3)
        staged = _stage_path(out_path)
        try:
            save_package(descr, staged)
            yield _stage("Testing the package with bioimageio.core", 4)
            problems = run_test(staged, folder)
            if problems:
                raise ExportError(f"The package failed bioimage.io's test, so it was not written: {problems}")
            _move_into_place(staged, out_path, overwrite)
        finally:
            staged.unlink(missing_ok=True)
    yield events.Exported(path=str(out_path), weights=tuple(files["formats"]))


def check_model_folder(model_dir) -> BundleMeta:
    """The settings of a complete model folder (not a package); ``BundleError`` otherwise."""
    from napari_unet.core.bundle import KERAS_FILE, WEIGHTS_FILE, BundleError, read_bundle_meta

    folder = Path(model_dir)
    if is_package_path(folder):
        raise BundleError(f"{folder} is already a package; export the model folder it was made from.")
    meta = read_bundle_meta(folder)
    if not ((folder / WEIGHTS_FILE).is_file() or (folder / KERAS_FILE).is_file()):
        raise BundleError(f"{folder} has no {WEIGHTS_FILE}; the model folder is incomplete. Retrain or restore it.")
    return meta


STAGES = 4


def _stage(text: str, index: int) -> events.Stage:
    return events.Stage(message=text, index=index, total=STAGES)


def check_output(out_path, overwrite: bool) -> Path:
    """Refuse an output that is not a new ``.zip`` in an existing, writable folder (unless ``overwrite``)."""
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".zip":
        raise ExportError(f"--out {out_path} must end in .zip (a bioimage.io package is a zip file).")
    if not out_path.absolute().parent.is_dir():
        raise FileNotFoundError(f"Output folder {out_path.absolute().parent} does not exist; create it first.")
    if not os.access(out_path.absolute().parent, os.W_OK | os.X_OK):
        raise ExportError(f"Cannot write to {out_path.absolute().parent}; pick a folder you can write to.")
    if out_path.is_dir():
        raise FileExistsError(f"{out_path} is a folder; it is never replaced. Pick another name.")
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; pick another name, or replace it with --overwrite.")
    return out_path


def _stage_path(out_path: Path) -> Path:
    """A temporary name beside the output (same file system: the final rename is atomic)."""
    return out_path.with_name(f".{out_path.name}.saving-{leftovers.owner_tag()}.zip")


def _move_into_place(staged: Path, out_path: Path, overwrite: bool) -> None:
    if out_path.exists() and not overwrite:  # again: it may have appeared while testing
        raise FileExistsError(f"{out_path} appeared while exporting; it is kept. Pick another name.")
    os.replace(staged, out_path)


# -- the files ---------------------------------------------------------------------------------
def exported_model(model, in_channels: int):
    """The U-Net taking and giving ``(batch, channel, y, x)``; the plugin's model is its layer ``unet``."""
    return channels_first_model(model, in_channels, INNER_MODEL)  # the package reader finds it by this name


def _write_files(folder: Path, model, meta: BundleMeta, image) -> dict[str, Any]:
    cfg = meta.model_cfg
    wrapped = exported_model(model, cfg.in_channels)
    test_in = test_input(image, meta, in_channels=cfg.in_channels)
    test_out = test_output(wrapped, test_in)
    files: dict[str, Any] = {"keras": folder / "napari_unet.keras", "input": folder / "test_input.npy",
                             "output": folder / "test_output.npy", "cover": folder / "cover.png",
                             "formats": ["keras_v3"], "input_sample": folder / "sample_input.tif",
                             "output_sample": folder / "sample_output.tif"}
    wrapped.save(files["keras"])
    np.save(files["input"], test_in)
    np.save(files["output"], test_out)
    import tifffile  # samples for people: the test tensors without their singleton axes

    tifffile.imwrite(files["input_sample"], test_in[0, 0] if test_in.shape[1] == 1 else test_in[0],
                     photometric="minisblack")
    tifffile.imwrite(files["output_sample"], test_out[0], photometric="minisblack")
    write_cover(files["cover"], test_in, test_out)
    files["saved_model"] = _saved_model_zip(folder, wrapped, cfg.in_channels)
    if files["saved_model"] is not None:
        files["formats"].append("tensorflow_saved_model_bundle")
    return files


def test_input(image, meta: BundleMeta, *, in_channels: int) -> np.ndarray:
    """One annotated slice of the training image, ``(1, C, Y, X)`` float32, cropped to a size
    the model takes (at most ``TEST_SIZE``), reflect-padded where the image is smaller."""
    zyxc = as_zyxc(image, channels=in_channels > 1)
    annotated = meta.training_data.annotated_slices if meta.training_data else []
    index = next((int(z) for z in annotated if 0 <= int(z) < zyxc.shape[0]), zyxc.shape[0] // 2)
    plane = np.asarray(zyxc[index], dtype=np.float32)
    minimum, step = size_range(meta.model_cfg.size_multiple)
    crops = []
    for n in plane.shape[:2]:
        size = max(minimum, minimum + (min(n, TEST_SIZE) - minimum) // step * step)
        start = max(0, (n - size) // 2)
        crops.append(slice(start, start + size))
    plane = plane[tuple(crops)]
    pad = [(0, max(0, minimum + (max(s, minimum) - minimum) // step * step - s)) for s in plane.shape[:2]]
    plane = np.pad(plane, pad + [(0, 0)], mode="reflect") if any(p[1] for p in pad) else plane
    return np.ascontiguousarray(np.moveaxis(plane, -1, 0)[None])


def test_output(wrapped, test_in: np.ndarray) -> np.ndarray:
    """What the plugin computes for the test input: the input's own percentiles (as ``scale_range``
    over batch, y and x does), then the network."""
    channels_last = np.moveaxis(test_in, 1, -1)
    norm = normalization_from_sample(channels_last.reshape(-1, channels_last.shape[-1]).astype(np.float64))
    scaled = np.moveaxis(normalize(channels_last, norm), -1, 1)
    return np.asarray(wrapped.predict_on_batch(scaled), dtype=np.float32)


def write_cover(path: Path, test_in: np.ndarray, test_out: np.ndarray) -> None:
    """The image and the prediction side by side (2:1), as a PNG."""
    from PIL import Image

    plane = test_in[0].mean(axis=0)
    lo, hi = np.percentile(plane, (1, 99.8))
    gray = np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1)
    left = np.repeat((gray * 255).astype(np.uint8)[..., None], 3, axis=-1)
    probs = test_out[0]
    classes = (probs[0] > 0.5).astype(int) if probs.shape[0] == 1 else probs.argmax(axis=0)
    palette = np.array([[0, 0, 0], [255, 200, 0], [0, 160, 255], [230, 60, 60], [80, 220, 80]], np.uint8)
    right = palette[classes % len(palette)]
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path)


def _saved_model_zip(folder: Path, wrapped, in_channels: int):
    """A zipped TensorFlow SavedModel whose ``serve`` endpoint returns ``{"probabilities": ...}``
    (what bioimageio.core's TensorFlow 2 adapter expects); ``None`` off the TensorFlow backend."""
    saved = folder / "tf_saved_model"
    if not write_saved_model(wrapped, in_channels, saved):
        return None
    target = folder / "tf_saved_model.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(saved.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(saved).as_posix())
    shutil.rmtree(saved)
    return target
