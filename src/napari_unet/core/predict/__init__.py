"""Prediction through a volume: reading, batching, tiling, writing, blocks and uncertainty."""

__all__ = ["predict_volume"]


def __getattr__(attr):
    # Imported on first use: the package's modules import one another through it.
    if attr == "predict_volume":
        from napari_unet.core.predict.volume import predict_volume

        return predict_volume
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
