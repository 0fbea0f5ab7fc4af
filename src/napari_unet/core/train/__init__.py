"""Training: patches and augmentation, the training loop, its live preview and object tuning."""

__all__ = ["train"]


def __getattr__(attr):
    # Imported on first use: the package's modules import one another through it.
    if attr == "train":
        from napari_unet.core.train.loop import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
