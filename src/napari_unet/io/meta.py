"""What an image file says about its pixels: one frozen record for TIFF (``io.tiff``) and zarr /
OME-Zarr (``io.omezarr``) alike, as ``io.images.open_lazy`` returns it beside the array."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageMeta:
    """The metadata of an opened image; per-axis tuples follow ``axes``."""

    axes: str  # one letter per array axis: T, Z, C (channels), Y, X, S (RGB samples, last)
    file_axes: str  # the axes as the file names them, before the layout was normalised
    source_path: str  # the file, resolved
    scale: tuple  # the pixel size along each axis (1.0 where the file gives none)
    units: tuple | None  # the unit of each axis (None: uncalibrated), or None when the file names none
    labels_marked: bool = False  # the file's metadata (not its name) marks the pixels as labels
    shape: tuple | None = None
    dtype: str | None = None
    rgb: bool = False  # RGB(A) pages: the samples are the last axis, "S"
    channel_names: tuple | None = None  # OME channel names, one per "C"
    label_channels: tuple | None = None  # per channel: its OME name says labels
    n_series: int = 1  # image series in the file (only the first is read)

    @property
    def channel_axis(self) -> int | None:
        """The channel ("C") or RGB sample ("S") axis, if any."""
        for name in ("S", "C"):
            if name in self.axes:
                return self.axes.index(name)
        return None
