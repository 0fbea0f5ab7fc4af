"""Training on several (image, labels) pairs at once: checks and what the pairs share.

Numpy only (the GUI uses the checks). The pairs may differ in size, not in channels: one model
takes one kind of input. Their annotated slices are pooled; patches are drawn from all of them
in proportion to their annotated pixels, and the intensity mapping comes from all the images.
"""

from __future__ import annotations

import numpy as np

from napari_unet.core import data


def pair_name(k: int, names=None) -> str:
    """"pair 2 (img2 / ann2)": how messages name the k-th pair (0 is the first)."""
    return f"pair {k + 1}" + (f" ({names[k]})" if names and k < len(names) and names[k] else "")


def channels_of(image, labels) -> int:
    """Channels of an image as a training pair reads it (one more axis than the labels: last)."""
    has_channels = getattr(image, "ndim", np.ndim(image)) == np.ndim(labels) + 1
    return int(np.shape(image)[-1]) if has_channels else 1


def check_same_channels(pairs, names=None) -> None:
    """One line naming the first pair whose image has other channels than the first image."""
    first = channels_of(*pairs[0])
    for k, pair in enumerate(pairs[1:], start=1):
        channels = channels_of(*pair)
        if channels != first:
            raise ValueError(
                f"The image of {pair_name(k, names)} has {channels} channel(s) but the first image has {first}: "
                "one model takes one kind of image, so train on images with the same channels.")


def validate_pairs(pairs, mode: str, *, instances: bool = False, names=None) -> None:
    """``data.validate_training_pair`` for each pair (naming the pair), then the channels."""
    if not pairs:
        raise ValueError("No (image, labels) pair to train on.")
    for k, (image, labels) in enumerate(pairs):
        try:
            data.validate_training_pair(image, labels, mode, instances=instances)
        except ValueError as exc:
            if len(pairs) == 1:
                raise
            raise ValueError(f"In {pair_name(k, names)}: {exc}") from None
    check_same_channels(pairs, names)


def annotated_values(labels_list, mode: str) -> np.ndarray:
    """The distinct label values on the annotated slices of all label volumes."""
    values = [np.unique(np.asarray(labels)[data.annotated_slices(labels, mode)]) for labels in labels_list]
    return np.unique(np.concatenate(values)) if values else np.zeros(0, np.int64)


def class_count_of_pairs(labels_list, mode: str, *, instances: bool = False) -> int:
    """Model outputs the labels of all pairs need together (``data.class_count``)."""
    return data.class_count_of_values(annotated_values([data.as_zyx(lab) for lab in labels_list], mode),
                                      mode, instances=instances)


def channels_and_classes(pairs, mode: str, *, instances: bool = False) -> tuple[int, int]:
    """``(input channels, model outputs)`` of a model trained on these (image, labels) pairs: the
    first image's channels (``check_same_channels``: all agree) and the outputs all the labels
    need together. The one rule for the command line, the Train dock and the training loop."""
    return channels_of(*pairs[0]), class_count_of_pairs([labels for _, labels in pairs], mode, instances=instances)


def model_config_for(model_cfg, pairs, mode: str, *, instances: bool = False):
    """``model_cfg`` (a ``ModelConfig``) with the input channels and outputs these pairs need."""
    in_channels, n_classes = channels_and_classes(pairs, mode, instances=instances)
    return model_cfg.replace(in_channels=in_channels, n_classes=n_classes)


def joint_normalization(images_zyxc, *, percentiles=(1, 99.8), max_samples: int = 10**7, seed: int = 0) -> dict:
    """Percentiles of all images together; each gives a share of the sample in proportion to its
    size. One image gives exactly ``data.compute_normalization``."""
    if len(images_zyxc) == 1:
        return data.compute_normalization(images_zyxc[0], percentiles=percentiles, max_samples=max_samples, seed=seed)
    sizes = [int(np.prod(image.shape[:3])) for image in images_zyxc]
    samples = []
    for image, size in zip(images_zyxc, sizes):
        z, y, x, c = image.shape
        share = max(1, max_samples * size // sum(sizes))
        samples.append(data.intensity_sample(lambda k, im=image: im[k], z, (y, x, c), max_samples=share, seed=seed))
    return data.normalization_from_sample(np.concatenate(samples), percentiles)
