"""Training patches: random sampling from annotated regions, and augmentation.

Numpy, scipy and scikit-image only; ``core.data`` re-exports ``PatchSampler``
and ``validation_arrays``. Images here are already ``(Z, Y, X, C)``.

The augmentation functions take ``image`` ``(Y, X, C)``, ``target`` ``(Y, X, K)`` and
``mask`` ``(Y, X)`` and moves their pixels the same way, so that labels stay
on the structures they annotate. Intensity changes touch the image only.
"""

from __future__ import annotations

import queue
import threading
import time
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi
from skimage.transform import resize

MAX_POINTS_PER_REGION = 2**20  # cap on stored patch centres, to bound memory
ELASTIC_GRID = 5  # control points per axis of the smooth displacement field


def flip_rotate(image, target, mask, rng: np.random.Generator):
    """One of the 8 flips/90-degree rotations of the square, drawn at random."""
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for a in (image, target, mask):
        a = np.rot90(a, k, axes=(0, 1))
        out.append(a[:, ::-1] if flip else a)
    return tuple(out)


@lru_cache(maxsize=16)
def _upsampling_matrix(size: int, grid: int) -> np.ndarray:
    """(size, grid) matrix doing cubic interpolation along one axis.

    The displacement field is separable, so ``M @ coarse @ N.T`` equals
    resizing the coarse grid, about 100x faster than ``resize`` itself.
    """
    return resize(np.eye(grid), (size, grid), order=3, mode="reflect", anti_aliasing=False, clip=False)


def elastic_deform(image, target, mask, rng: np.random.Generator, *, strength: float = 0.02):
    """Warp with a smooth random displacement field.

    ``strength`` is the standard deviation of the displacement as a fraction of
    the patch size. The image is interpolated linearly, target and mask take
    the nearest pixel, both at the same coordinates, so they stay aligned.
    Outside the patch the edge pixels are repeated.
    """
    h, w = mask.shape
    sigma = strength * max(h, w)
    my, mx = _upsampling_matrix(h, ELASTIC_GRID), _upsampling_matrix(w, ELASTIC_GRID)
    dy = my @ rng.normal(0.0, sigma, (ELASTIC_GRID, ELASTIC_GRID)) @ mx.T
    dx = my @ rng.normal(0.0, sigma, (ELASTIC_GRID, ELASTIC_GRID)) @ mx.T
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    cy, cx = yy + dy, xx + dx

    warped = np.empty(image.shape, np.float32)
    for c in range(image.shape[-1]):
        ndi.map_coordinates(image[..., c], [cy, cx], output=warped[..., c], order=1, mode="nearest")
    iy = np.clip(np.rint(cy), 0, h - 1).astype(np.intp)
    ix = np.clip(np.rint(cx), 0, w - 1).astype(np.intp)
    return warped, target[iy, ix], mask[iy, ix]


def jitter_intensity(image, rng: np.random.Generator, *, gain=0.2, offset=0.1, gamma=0.3):
    """Random gamma (shared by the channels), then gain and offset per channel."""
    image = np.asarray(image, np.float32)
    lo, hi = float(image.min()), float(image.max())
    if hi > lo:
        # Gamma needs values in [0, 1]; normalised images may stray outside.
        g = float(np.exp(rng.uniform(-gamma, gamma)))
        image = ((image - lo) / (hi - lo)) ** g * (hi - lo) + lo
    n = image.shape[-1]
    image = image * rng.uniform(1 - gain, 1 + gain, n) + rng.uniform(-offset, offset, n)
    return image.astype(np.float32, copy=False)


def augment_patch(
    image,
    target,
    mask,
    rng: np.random.Generator,
    *,
    flips: bool = True,
    elastic_probability: float = 0.5,
    elastic_strength: float = 0.02,
    intensity: bool = True,
):
    """Apply the enabled augmentations in turn; returns (image, target, mask).

    If the warp leaves the patch without any annotated pixel (a tiny scribble
    can be missed by nearest-neighbour sampling), the unwarped patch is kept,
    so a patch never loses all its annotation.
    """
    if flips:
        image, target, mask = flip_rotate(image, target, mask, rng)
    if elastic_probability > 0 and rng.random() < elastic_probability:
        warped = elastic_deform(image, target, mask, rng, strength=elastic_strength)
        if warped[2].any() or not mask.any():
            image, target, mask = warped
    if intensity:
        image = jitter_intensity(image, rng)
    return image, target, mask


# ------------------------------------------------------------------- patches


def _check_zyxc(image):
    """A ``(Z, Y, X, C)`` array, or a list of ``(Y, X, C)`` slices (of several sizes: several images)."""
    if isinstance(image, (list, tuple)):
        if image and all(getattr(s, "ndim", None) == 3 for s in image):
            return image
    elif getattr(image, "ndim", None) == 4:
        return image
    shape = f" of shape {image.shape}" if hasattr(image, "shape") else ""
    raise ValueError("Expected a (Z, Y, X, C) image (see core.data.as_zyxc) or a list of (Y, X, C) slices, "
                     f"got a {type(image).__name__}{shape}.")


def _foreground(target):
    """Pixels of any class but background."""
    return target[..., 0] > 0.5 if target.shape[-1] == 1 else target[..., 1:].any(axis=-1)


def _pad_crop(image, target, mask, size_y, size_x):
    """Pad a crop up to at least (size_y, size_x): image mirrored, target and mask 0."""
    py, px = max(0, size_y - mask.shape[0]), max(0, size_x - mask.shape[1])
    if not (py or px):
        return image, target, mask
    yx = [(py // 2, py - py // 2), (px // 2, px - px // 2)]
    return (
        np.pad(image, yx + [(0, 0)], mode="reflect"),
        np.pad(target, yx + [(0, 0)]),
        np.pad(mask, yx),
    )


class PatchSampler:
    """Random training patches from the annotated regions.

    With probability ``foreground_bias`` a patch contains a random annotated
    foreground pixel, otherwise a random annotated pixel, so no patch is
    ever unannotated. Regions are picked in proportion to their pixel counts.
    """

    def __init__(
        self,
        image_zyxc_normalized,
        targets: dict,
        masks: dict,
        regions,
        patch_size: int,
        batch_size: int,
        *,
        foreground_bias: float = 0.5,
        augment: bool = True,
        seed: int = 0,
        elastic_probability: float = 0.5,
        elastic_strength: float = 0.02,
        intensity: bool = True,
    ):
        if patch_size < 1 or batch_size < 1:
            raise ValueError(f"patch_size and batch_size must be positive, got {patch_size}, {batch_size}.")
        self.patch_size, self.batch_size = int(patch_size), int(batch_size)
        self.foreground_bias = float(foreground_bias)
        self.augment = augment
        self._augment_kwargs = dict(
            elastic_probability=elastic_probability, elastic_strength=elastic_strength, intensity=intensity
        )
        self._rng = np.random.default_rng(seed)
        image = _check_zyxc(image_zyxc_normalized)
        self._crops = []  # (image, target, mask, annotated flat idx or None for all, foreground flat idx)
        n_annotated, n_foreground = [], []
        for z, (y0, y1, x0, x1) in regions:
            img, tgt, msk = _pad_crop(
                np.asarray(image[z][y0:y1, x0:x1], np.float32),
                np.asarray(targets[z][y0:y1, x0:x1], np.float32),
                np.asarray(masks[z][y0:y1, x0:x1], np.float32),
                self.patch_size,
                self.patch_size,
            )
            annotated = msk > 0
            fg = np.flatnonzero(annotated & _foreground(tgt))
            n_ann = int(np.count_nonzero(annotated))
            if n_ann == 0:
                continue
            ann = None if n_ann == annotated.size else self._cap(np.flatnonzero(annotated))
            self._crops.append((img, tgt, msk, ann, self._cap(fg)))
            n_annotated.append(n_ann)
            n_foreground.append(fg.size)
        if not self._crops:
            raise ValueError("The training regions hold no annotated pixel: annotate more or lower val_fraction.")
        self._p_annotated = np.asarray(n_annotated, float) / sum(n_annotated)
        self._p_foreground = np.asarray(n_foreground, float) / max(1, sum(n_foreground))
        self._has_foreground = sum(n_foreground) > 0
        self.n_channels = self._crops[0][0].shape[-1]
        self.n_classes = self._crops[0][1].shape[-1]

    def _cap(self, flat_idx):
        if flat_idx.size > MAX_POINTS_PER_REGION:
            return flat_idx[self._rng.integers(0, flat_idx.size, MAX_POINTS_PER_REGION)]
        return flat_idx

    def _corner(self, centre, length):
        """Start of a patch that contains ``centre``, lies inside ``length`` and is shifted at random."""
        p = self.patch_size
        lo, hi = max(0, centre - p + 1), min(length - p, centre)
        shift = int(self._rng.integers(-(p // 4), p // 4 + 1))
        return int(np.clip(centre - p // 2 + shift, lo, hi))

    def _one_patch(self):
        rng = self._rng
        use_fg = self._has_foreground and rng.random() < self.foreground_bias
        i = int(rng.choice(len(self._crops), p=self._p_foreground if use_fg else self._p_annotated))
        img, tgt, msk, ann, fg = self._crops[i]
        points = fg if use_fg else ann
        flat = int(rng.integers(msk.size)) if points is None else int(points[rng.integers(points.size)])
        cy, cx = divmod(flat, msk.shape[1])
        y0, x0 = self._corner(cy, msk.shape[0]), self._corner(cx, msk.shape[1])
        window = (slice(y0, y0 + self.patch_size), slice(x0, x0 + self.patch_size))
        patch = img[window], tgt[window], msk[window]
        if self.augment:
            patch = augment_patch(*patch, rng, **self._augment_kwargs)
        return patch

    def sample_batch(self):
        """``(x (B, P, P, C), y (B, P, P, n_classes + 1))`` float32; y's last channel is the mask."""
        b, p = self.batch_size, self.patch_size
        x = np.empty((b, p, p, self.n_channels), np.float32)
        y = np.empty((b, p, p, self.n_classes + 1), np.float32)
        for k in range(b):
            x[k], y[k, ..., :-1], y[k, ..., -1] = self._one_patch()
        return x, y


def validation_arrays(image_norm, targets: dict, masks: dict, val_items, multiple: int, *, max_tile: int = 256):
    """Stacked validation crops ``(x, y)`` in the layout of ``sample_batch``.

    Regions are cut into tiles of at most ``max_tile`` (rounded down to
    ``multiple``) and every tile is padded to one common size, a multiple of
    ``multiple`` (image mirrored, mask 0). Tiles without annotated pixels are
    dropped; no tile at all gives arrays of length 0.
    """
    image = _check_zyxc(image_norm)
    n_classes = next(iter(targets.values())).shape[-1] if targets else 1
    tile = max(multiple, max_tile // multiple * multiple)
    round_up = lambda n: min(tile, -(-n // multiple) * multiple)  # noqa: E731
    ty = round_up(max((y1 - y0 for _, (y0, y1, _, _) in val_items), default=multiple))
    tx = round_up(max((x1 - x0 for _, (_, _, x0, x1) in val_items), default=multiple))
    xs, ys = [], []
    for z, (y0, y1, x0, x1) in val_items:
        for a in range(y0, y1, ty):
            for b in range(x0, x1, tx):
                win = (slice(a, min(a + ty, y1)), slice(b, min(b + tx, x1)))
                msk = np.asarray(masks[z][win], np.float32)
                if not msk.any():
                    continue
                img, tgt, msk = np.asarray(image[z][win], np.float32), np.asarray(targets[z][win], np.float32), msk
                pad = [(0, ty - msk.shape[0]), (0, tx - msk.shape[1])]
                xs.append(np.pad(img, pad + [(0, 0)], mode="reflect"))
                ys.append(np.concatenate([np.pad(tgt, pad + [(0, 0)]), np.pad(msk, pad)[..., None]], axis=-1))
    if not xs:
        return (
            np.zeros((0, ty, tx, image[0].shape[-1]), np.float32),
            np.zeros((0, ty, tx, n_classes + 1), np.float32),
        )
    return np.stack(xs), np.stack(ys)


class SerialBatches:
    """``sampler.sample_batch()`` in the caller's thread; ``wait_s`` is the time it took."""

    def __init__(self, sampler):
        self._sampler = sampler
        self.wait_s = 0.0

    def next_batch(self):
        start = time.perf_counter()
        try:
            return self._sampler.sample_batch()
        finally:
            self.wait_s += time.perf_counter() - start

    def close(self) -> None:
        pass


def batches(sampler, prefetch: int):
    """Batches made ahead ``prefetch`` deep in a background thread, or (0) in the caller's."""
    return PrefetchedBatches(sampler, prefetch) if prefetch > 0 else SerialBatches(sampler)


class PrefetchedBatches:
    """``sampler.sample_batch()`` run ahead in a background thread, ``depth`` batches deep.

    Sampling and augmenting a batch takes milliseconds of Python and numpy; a GPU step takes
    about as long, so without this the accelerator waits for every batch. One producer keeps
    the sampler's order, so a seed gives the same batches as calling the sampler directly.
    ``wait_s`` adds up the time ``next_batch`` waited for a batch.
    """

    def __init__(self, sampler, depth: int = 2):
        self._sampler = sampler
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.wait_s = 0.0
        self._thread = threading.Thread(target=self._fill, name="napari-unet batches", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                self._put(self._sampler.sample_batch())
        except Exception as exc:  # noqa: BLE001  raised again in the training loop
            self._put(exc)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next_batch(self):
        start = time.perf_counter()
        item = self._queue.get()
        self.wait_s += time.perf_counter() - start
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
