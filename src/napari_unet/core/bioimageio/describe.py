"""The bioimage.io description (rdf.yaml) of an exported napari-unet model, and its test.

Imports ``bioimageio.spec`` (and ``bioimageio.core`` for the test): only the export job uses it.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from napari_unet.core.bioimageio.package import CONFIG_KEY, first_line
from napari_unet.core.bundle_meta import BundleMeta
from napari_unet.core.config import PredictConfig

# Consumers crop this much from each side of a tile, as the plugin's tiled prediction does.
HALO = PredictConfig().tile_overlap // 2
HOMEPAGE = "https://github.com/napari-unet/napari-unet"
UNET_CITATION = ("Ronneberger, O., Fischer, P. and Brox, T. (2015). U-Net: Convolutional Networks for "
                 "Biomedical Image Segmentation. MICCAI 2015, LNCS 9351, 234-241.",
                 "10.1007/978-3-319-24574-4_28")


class ExportError(ValueError):
    """A package could not be made, or failed bioimage.io's test; the message says why."""


def size_range(size_multiple: int) -> tuple[int, int]:
    """``(min, step)`` of the spatial sizes: multiples of the U-Net's, wider than two halos."""
    step = int(size_multiple)
    return step * (2 * HALO // step + 1), step


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "0"


def _axes(meta: BundleMeta, minimum: int, step: int):
    from bioimageio.spec.model import v0_5 as b

    cfg = meta.model_cfg
    names = meta.classes.names if meta.classes else []
    out_names = names[1:] if cfg.n_classes == 1 else names
    if len(out_names) != cfg.n_classes:
        out_names = [f"class {k}" for k in range(cfg.n_classes)]
    size = b.ParameterizedSize(min=minimum, step=step)
    inputs = [b.BatchAxis(), b.ChannelAxis(channel_names=[b.Identifier(f"channel{k}") for k in range(cfg.in_channels)]),
              b.SpaceInputAxis(id=b.AxisId("y"), size=size), b.SpaceInputAxis(id=b.AxisId("x"), size=size)]
    outputs = [b.BatchAxis(), b.ChannelAxis(channel_names=[b.Identifier(_identifier(n)) for n in out_names])]
    outputs += [b.SpaceOutputAxisWithHalo(id=b.AxisId(a), halo=HALO,
                                          size=b.SizeReference(tensor_id=b.TensorId("input"), axis_id=b.AxisId(a)))
                for a in ("y", "x")]
    return inputs, outputs


def _identifier(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(name)) or "class"


def _tensors(files: dict, meta: BundleMeta, minimum: int, step: int):
    """Input with the percentile normalisation the plugin applies by default, and the probabilities."""
    from bioimageio.spec.model import v0_5 as b

    in_axes, out_axes = _axes(meta, minimum, step)
    low, high = meta.normalization.percentiles
    # The plugin maps each volume by its own percentiles (per channel, over all its slices): with the
    # volume's slices as the batch, scale_range over batch, y and x gives the same values.
    scale = b.ScaleRangeDescr(kwargs=b.ScaleRangeKwargs(
        axes=[b.AxisId("batch"), b.AxisId("y"), b.AxisId("x")], min_percentile=float(low),
        max_percentile=float(high)))
    inputs = [b.InputTensorDescr(
        id=b.TensorId("input"), axes=in_axes, test_tensor=b.FileDescr(source=files["input"]),
        sample_tensor=b.FileDescr(source=files["input_sample"]),
        description="image slices (Z as the batch), any intensity range",
        data=b.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[b.EnsureDtypeDescr(kwargs=b.EnsureDtypeKwargs(dtype="float32")), scale])]
    outputs = [b.OutputTensorDescr(
        id=b.TensorId("probabilities"), axes=out_axes, test_tensor=b.FileDescr(source=files["output"]),
        sample_tensor=b.FileDescr(source=files["output_sample"]),
        description="per-class probabilities (the network ends with sigmoid or softmax)",
        data=b.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)))]
    return inputs, outputs


def _weights(files: dict, authors):
    from bioimageio.spec.model import v0_5 as b

    tf_version = _version("tensorflow")
    keras_v3 = b.KerasV3WeightsDescr(
        source=files["keras"], keras_version=b.Version(_version("keras")),
        backend=("tensorflow", b.Version(tf_version)), authors=authors)
    saved = None
    if files.get("saved_model") is not None:
        saved = b.TensorflowSavedModelBundleWeightsDescr(
            source=files["saved_model"], tensorflow_version=b.Version(tf_version), parent="keras_v3",
            comment="exported from the keras_v3 weights with keras.export.ExportArchive (endpoint 'serve')")
    return b.WeightsDescr(keras_v3=keras_v3, tensorflow_saved_model_bundle=saved)


def describe(folder: Path, files: dict, meta: BundleMeta, model_dir: Path, *, name=None, authors=(),
             license="CC-BY-4.0", image_name=None):
    """The ``ModelDescr`` of the package; raises ``ExportError`` with the spec's reasons if invalid."""
    from bioimageio.spec.model import v0_5 as b

    people = [b.Author(name=a) for a in (authors or [getpass.getuser() or "napari-unet user"])]
    minimum, step = size_range(meta.model_cfg.size_multiple)
    inputs, outputs = _tensors(files, meta, minimum, step)
    doc = folder / "README.md"
    doc.write_text(documentation(meta, model_dir, image_name=image_name, minimum=minimum, step=step,
                                 formats=files["formats"]), encoding="utf-8")
    kind = "instance segmentation" if meta.instances else "semantic segmentation"
    extra: dict[str, Any] = {CONFIG_KEY: {"bundle": meta.json_dict(), "package_format": 1}}  # an extra, open entry
    return _build(b, dict(
        name=name or f"napari-unet {model_dir.name}",
        description=f"2-D U-Net ({kind}) trained in napari-unet on a few annotated slices of a 3-D stack.",
        authors=people, cite=[b.CiteEntry(text=UNET_CITATION[0], doi=b.Doi(UNET_CITATION[1])),
                              b.CiteEntry(text="napari-unet", url=b.HttpUrl(HOMEPAGE))],
        license=b.LicenseId(license), documentation=b.FileDescr(source=doc),
        covers=[b.FileDescr(source=files["cover"])],
        tags=_tags(meta), inputs=inputs, outputs=outputs, weights=_weights(files, people),
        git_repo=b.HttpUrl(HOMEPAGE), version="1.0",
        config=b.Config(**extra),
    ))


def _build(b, fields: dict):
    from pydantic import ValidationError

    try:
        return b.ModelDescr(**fields)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise ExportError(f"The bioimage.io description is invalid ({errors}).") from None


def _tags(meta: BundleMeta) -> list[str]:
    tags = ["unet", "2d", "segmentation", "keras", "tensorflow", "napari-unet", "napari"]
    tags.append("instance-segmentation" if meta.instances else "semantic-segmentation")
    return tags


def save_package(descr, path: Path) -> None:
    from bioimageio.spec import save_bioimageio_package

    save_bioimageio_package(descr, output_path=path)


def run_test(path: Path, workdir: Path) -> str:
    """Run ``bioimageio.core.test_model`` on the package; "" when it passes, else the reasons."""
    from bioimageio.core import test_model

    previous = os.getcwd()
    os.chdir(workdir)  # bioimageio.core unzips SavedModel weights into the working directory
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            summary = test_model(str(path))
    finally:
        os.chdir(previous)
    if summary.status == "passed":
        return ""
    failed = [d for d in summary.details if d.status == "failed"]
    reasons = [f"{d.name}: {first_line(d.errors[0].msg) if d.errors else 'failed'}" for d in failed[:3]]
    return "; ".join(reasons) or f"status {summary.status}"


def documentation(meta: BundleMeta, model_dir: Path, *, image_name, minimum: int, step: int, formats) -> str:
    """The package's README: what the model does, how to run it, and its validation."""
    from napari_unet.core.bioimageio.doc import render

    return render(meta, model_dir, image_name=image_name, minimum=minimum, step=step, formats=formats)
