"""``napari-unet suggest``: the unannotated slices a model is least sure of, to annotate next."""

from __future__ import annotations

import numpy as np

from napari_unet.cli.images import load_image
from napari_unet.cli.progress import follow, raise_on_error
from napari_unet.core import events
from napari_unet.core.predict.uncertainty import candidate_slices
from napari_unet.io import tiff
from napari_unet.runtime.jobs.rank import start_ranking


def run_suggest(args) -> int:
    image, _, has_channels = load_image(args.image)
    labels = np.asarray(tiff.read_array(args.labels)[0])
    if labels.ndim != 3 or image.shape[:3] != labels.shape:
        raise ValueError(f"--image {args.image} and --labels {args.labels} must be one 3-D stack and its "
                         f"annotations (shapes {image.shape} and {labels.shape}).")
    slices, free = candidate_slices(labels, args.max_slices)
    job = start_ranking(image, args.model, slices=slices, channel_axis=3 if has_channels else None)

    def show(event, bar):
        if isinstance(event, events.Progress):
            bar.total = event.n_slices
            bar.update(1)

    with job:
        final = follow(job, show, desc="Ranking", unit="slice")
    raise_on_error(final, "Ranking")
    if not isinstance(final, events.Ranked):
        return 130
    sample = f" (an even sample of {len(slices)} of the {free} unannotated)" if len(slices) < free else ""
    print(f"Slices the model is least sure of, most uncertain first{sample}:")
    for z, score in final.ranking[: args.top or None]:
        print(f"slice {z:5d}  uncertainty {score:.3f}")
    return 0
