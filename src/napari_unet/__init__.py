"""napari-unet: annotate a few slices, let a U-Net segment the whole volume."""

__version__ = "0.1.0"
