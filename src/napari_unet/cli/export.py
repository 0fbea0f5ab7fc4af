"""``napari-unet export``: a model folder as a bioimage.io model package, made in the worker."""

from __future__ import annotations

from pathlib import Path

from napari_unet.cli.images import load_image
from napari_unet.cli.progress import JobFailed, follow
from napari_unet.core import events
from napari_unet.core.bioimageio.export import check_libraries, check_model_folder, check_output
from napari_unet.runtime import present
from napari_unet.runtime.jobs.export import start_export


def run_export(args) -> int:
    check_libraries()  # before reading anything: name the extra to install
    meta = check_model_folder(args.model)
    check_output(args.out, args.overwrite)
    image, _, has_channels = load_image(args.image)
    channels = image.shape[-1] if has_channels else 1
    expected = meta.model_cfg.in_channels
    if channels != expected:
        raise ValueError(f"--image {args.image} has {channels} channel(s), the model takes {expected}: "
                         "give the image the model was trained on.")
    job = start_export(args.model, args.out, image=image, overwrite=args.overwrite, name=args.name,
                       authors=args.authors or (), license=args.license, image_name=Path(args.image).name)

    def show(event, bar):
        if isinstance(event, events.Stage):
            bar.total = event.total
            bar.set_description(event.message)
            bar.update(1)

    with job:
        final = follow(job, show, desc="Exporting", unit="step")
    if isinstance(final, events.Error):
        raise JobFailed(present.failed_line(final, "Export"))
    if not isinstance(final, events.Exported):
        print(present.EXPORT_STOPPED)
        return 130
    print(present.exported_line(final))
    return 0
