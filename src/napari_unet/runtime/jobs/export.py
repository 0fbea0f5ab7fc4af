"""A model as a bioimage.io package: ``start_export`` (parent) and ``export_job`` (worker)."""

from __future__ import annotations

from napari_unet.runtime.engine import Job
from napari_unet.runtime.spawning import worker_env


def start_export(model_dir, out_path, *, image, overwrite=False, name=None, authors=(), license="CC-BY-4.0",
                 image_name=None) -> Job:
    """A (not yet started) job that writes ``model_dir`` as a bioimage.io package ``out_path`` (.zip).

    ``image``: the training image (an array or ``LazyFile``), from which the test tensors are cut.
    Refused here, before the worker starts: a broken model folder, an output that exists (unless
    ``overwrite``) and missing ``bioimageio`` libraries. The worker runs TensorFlow: the package
    names that backend and carries a SavedModel made with it.
    """
    from napari_unet.core.bioimageio.export import check_libraries, check_model_folder, check_output  # no Keras

    check_libraries()
    check_model_folder(model_dir)
    check_output(out_path, overwrite)
    params = {"model_dir": str(model_dir), "out_path": str(out_path), "overwrite": bool(overwrite),
              "name": name, "authors": tuple(authors), "license": license, "image_name": image_name}
    return Job(export_job, params, arrays={"image": image}, env={**worker_env(), "KERAS_BACKEND": "tensorflow"})


def export_job(arrays, outputs, stop_event, model_dir, out_path, *, overwrite=False, name=None, authors=(),
               license="CC-BY-4.0", image_name=None):
    """Export a model folder as a bioimage.io package; test tensors come from ``arrays["image"]``."""
    from napari_unet.core.bioimageio.export import export_package

    yield from export_package(model_dir, out_path, image=arrays["image"], overwrite=overwrite, name=name,
                              authors=authors, license=license, image_name=image_name)
