"""Model bundles: a folder with the weights and a self-describing ``bundle.json``.

::

    my-model/
      model.weights.h5   the weights (or model.keras, a whole saved model)
      bundle.json        format_version, model_config, train_config, normalization,
                         classes, annotation_mode, instances, input_axes, history,
                         validation, versions, created (``core.bundle_meta.BundleMeta``)

Importing this module does not import Keras: ``read_bundle_meta`` is what the
GUI uses to show a summary. Saving is atomic: everything is written to a
temporary folder beside the target, which is then renamed into place.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import platform
import re
import shutil
import socket
import uuid
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from napari_unet.core.bundle_meta import FORMAT_VERSION, SUPPORTED_FORMAT_VERSIONS, BundleMeta, Normalization, upgrade
from napari_unet.core.config import ConfigError, ModelConfig
from napari_unet.core.nn import saving as keras_files
from napari_unet.io import disk, leftovers

META_FILE = "bundle.json"
WEIGHTS_FILE = "model.weights.h5"
KERAS_FILE = "model.keras"
REQUIRED_KEYS = ("format_version", "model_config", "normalization")


class BundleError(ValueError):
    """A model folder is missing, incomplete, corrupt or of an unsupported version."""


# ------------------------------------------------------------------ metadata


def _versions() -> dict:
    from napari_unet import __version__

    return {
        "napari-unet": __version__,
        **keras_files.backend_versions(),  # keras, backend, backend_version
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def read_bundle_meta(path) -> BundleMeta:
    """Read and check ``bundle.json`` only (no Keras import).

    A ``.zip`` is read as a bioimage.io package exported by napari-unet (its stored settings).
    """
    folder = Path(path)
    if folder.suffix.lower() == ".zip" and not folder.is_dir():
        from napari_unet.core.bioimageio.package import CONFIG_KEY, package_meta

        return parse_bundle_meta(package_meta(folder), where=f"{folder} (config.{CONFIG_KEY}.bundle)", folder=folder)
    if not folder.exists():
        raise BundleError(f"Model folder {folder} does not exist: pick the folder a training run wrote.")
    if not folder.is_dir():
        raise BundleError(f"{folder} is a file, not a model folder: pick the folder that holds {META_FILE}.")
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise BundleError(f"{folder} is not a model folder: it has no {META_FILE}.")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{meta_path} is corrupt ({exc}); retrain or restore the model folder.") from None
    return parse_bundle_meta(meta, where=meta_path, folder=folder)


def parse_bundle_meta(raw, *, where, folder) -> BundleMeta:
    """``raw`` (a bundle description as JSON holds it) as a ``BundleMeta``, older format versions
    upgraded; a ``BundleError`` when it is incomplete, invalid or of an unknown version.
    ``where`` names it in the errors."""
    if not isinstance(raw, dict):
        raise BundleError(f"{where} is corrupt: it holds no settings object; retrain the model.")
    _check_version(raw.get("format_version"), folder)
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise BundleError(f"{where} lacks {missing}; the model folder is incomplete, retrain the model.")
    try:
        ModelConfig.from_dict(raw["model_config"])
    except (ConfigError, TypeError, AttributeError) as exc:
        raise BundleError(f"{where} holds an invalid model_config: {exc}") from None
    try:
        return BundleMeta.model_validate(upgrade(raw))
    except ValidationError as exc:
        raise BundleError(f"{where} holds an invalid {_first_problem(exc)}; retrain or restore the model "
                          "folder.") from None


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    value = error["input"]
    got = "" if isinstance(value, (dict, list)) else f", got {value!r}"  # a missing key's input is its parent
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}{got}"


def _check_version(version, folder) -> None:
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise BundleError(f"{folder} has bundle format version {version}, newer than this napari-unet reads "
                          f"(up to {FORMAT_VERSION}): update napari-unet to the release that wrote it, or retrain.")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise BundleError(
            f"{folder} has bundle format version {version!r}; this napari-unet reads version(s) "
            f"{list(SUPPORTED_FORMAT_VERSIONS)}. Use the napari-unet release that wrote it, or retrain."
        )


def check_stored_normalization(norm: Normalization | dict, folder) -> None:
    """Refuse stored percentiles that cannot map intensities (low >= high, not finite), before
    a prediction that uses them (``normalize="model"``) starts. ``norm``: a model's, or the plain
    dict a prediction carries."""
    norm = Normalization.model_validate(norm)
    for channel, (low, high) in enumerate(zip(norm.low, norm.high)):
        if not _finite_range(low, high):
            raise BundleError(f"{folder}: the stored normalization is broken (channel {channel}: low {low}, "
                              f"high {high}); use --normalize volume ('Intensities' in the Segment dock), "
                              "or retrain the model.")


def _finite_range(low, high) -> bool:
    try:
        return bool(np.isfinite(low) and np.isfinite(high) and high > low)
    except TypeError:
        return False


# ------------------------------------------------------------ saving, loading


def check_target(path, overwrite: bool = False) -> None:
    """Raise ``FileExistsError`` if saving to ``path`` would replace something it should not,
    ``ValueError`` if its folder is not writable.

    An empty folder is fine. An existing model folder needs ``overwrite``; a
    non-empty folder that is not a model folder, or a file, is never replaced.
    """
    target = Path(path)
    _check_writable(target)
    if not target.exists():
        return
    if target.is_dir() and not any(target.iterdir()):
        return
    if target.is_dir() and (target / META_FILE).exists():
        if overwrite:
            return
        raise FileExistsError(
            f"Model folder {target} already exists: choose a new name (e.g. {target.name}-2) "
            "or allow replacing it."
        )
    raise FileExistsError(
        f"{target} exists and is not a model folder; it is never replaced. Choose a new name for the model."
    )


# Longest name a save derives from the model's: the owner's process id (up to 7 digits, Linux's
# limit) and host, and a random tag. (A rescue, ``core.train.rescue_folder``, cuts the name short.)
_OWNER = f"{'9' * 7}@{socket.gethostname()}"


def check_model_name(path, option: str = "The model folder") -> None:
    """Refuse, before training, a model name too long for its disk, counting the temporary folder
    the save goes through."""
    target = Path(path).absolute()
    saving = f".{target.name}.saving-{_OWNER}-{'0' * 8}"
    disk.check_name_length(target.name, [saving], target.parent, option)


def _check_writable(target: Path) -> None:
    """The model is written beside ``target`` and renamed into place (its missing folders are
    created), so the nearest existing folder above it must be writable: say so before training."""
    folder = target.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"Cannot save the model to {target}: {folder} is a file, not a folder. "
                         "Pick another place for the model.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"Cannot save the model to {target}: the folder {folder} is not writable. "
                         "Pick a folder you can write to.")


def save_bundle(path, model, *, meta: BundleMeta, overwrite: bool = False) -> Path:
    """Write ``model`` and ``meta`` as a bundle folder at ``path``, atomically.

    ``versions``, ``created`` and ``weights`` are filled in. If the write
    fails, whatever was at ``path`` before is left as it was.
    """
    target = Path(path).absolute()
    reclaim_stale_saves(target)  # first: it may put back a model that check_target must see
    check_target(target, overwrite)
    meta = meta.replace(versions=_versions(), weights=WEIGHTS_FILE,
                        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    text = json.dumps(meta.json_dict(), indent=2, sort_keys=True, allow_nan=False)

    target.parent.mkdir(parents=True, exist_ok=True)
    _check_room(target.parent, model, len(text))
    tmp = _fresh_folder(target, "saving")
    try:
        keras_files.save_weights(model, tmp / WEIGHTS_FILE)
        (tmp / META_FILE).write_text(text, encoding="utf-8")
        _move_into_place(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# HDF5 writes headers and padding besides the weights; measured well under this on our models.
WEIGHTS_FILE_OVERHEAD = 1.1
WEIGHTS_FILE_SLACK_BYTES = 1 << 20


def _check_room(folder: Path, model, meta_bytes: int) -> None:
    """``OSError(ENOSPC)`` before writing when the disk cannot hold the bundle: h5py crashes the
    process (SIGSEGV in ``close``) when the disk fills while it writes, so never let it try."""
    weights = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights)
    need = int(weights * WEIGHTS_FILE_OVERHEAD) + WEIGHTS_FILE_SLACK_BYTES + meta_bytes
    free = shutil.disk_usage(folder).free
    if need > free:
        raise OSError(errno.ENOSPC, f"No space left on device: the model needs about {need >> 10} KiB, "
                                    f"{free >> 10} KiB are free", str(folder))


def _fresh_folder(target: Path, purpose: str) -> Path:
    """A new hidden folder beside ``target`` (same file system, so renames are atomic).

    Its name carries the owner (``pid@host``), so that a later save can tell the folder of a
    killed run from that of a live one (``reclaim_stale_saves``).
    """
    while True:
        folder = target.parent / f".{target.name}.{purpose}-{leftovers.owner_tag()}-{uuid.uuid4().hex[:8]}"
        try:
            folder.mkdir()  # unlike mkdtemp, honours the umask like any other folder
            return folder
        except FileExistsError:
            continue


def reclaim_stale_saves(path) -> list[str]:
    """Tidy what killed saves to ``path`` left beside it; returns one line per thing done.

    A half-written ``.NAME.saving-*`` folder is removed. A ``.NAME.old-*`` folder holds the
    previous model while the new one is renamed into place: if the model folder is missing,
    the kill came between the two renames, and the previous model is put back.
    """
    target = Path(path).absolute()
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(saving|old)-(\d+@.+)-[0-9a-f]{{8}}")
    done: list[str] = []
    try:
        entries = sorted(target.parent.iterdir())
    except OSError:
        return done
    for folder in entries:
        match = pattern.fullmatch(folder.name)
        if not match or not folder.is_dir() or not leftovers.owner_gone(match.group(2)):
            continue
        previous = folder / target.name
        if match.group(1) == "old" and previous.is_dir() and not target.exists():
            os.replace(previous, target)
            done.append(f"Restored the model {target}, which a killed save had moved aside.")
        shutil.rmtree(folder, ignore_errors=True)
        if match.group(1) == "saving":
            done.append(f"Removed {folder}, the unfinished save of a killed run.")
    return done


def _move_into_place(tmp: Path, target: Path, overwrite: bool) -> None:
    check_target(target, overwrite)  # again: something may have appeared while writing
    if not target.exists():
        os.replace(tmp, target)
        return
    old = _fresh_folder(target, "old")
    os.replace(target, old / target.name)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old / target.name, target)  # put the previous model back
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def load_bundle(path):
    """``(model, meta)`` from a bundle folder (or an exported package); the model is not compiled."""
    folder = Path(path)
    meta = read_bundle_meta(folder)
    if folder.suffix.lower() == ".zip" and not folder.is_dir():
        from napari_unet.core.bioimageio.package import load_package_model

        return load_package_model(folder), meta
    weights, whole = folder / WEIGHTS_FILE, folder / KERAS_FILE
    try:
        if weights.is_file():
            model = keras_files.unet_with_weights(meta.model_cfg, weights)
        elif whole.is_file():
            model = keras_files.load_whole_model(whole)
        else:
            raise BundleError(f"{folder} has no {WEIGHTS_FILE} (or {KERAS_FILE}); the model folder is incomplete.")
    except BundleError:
        raise
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [""])[0][:300]
        raise BundleError(
            f"The weights in {folder} cannot be loaded ({type(exc).__name__}: {reason}); "
            "the file is corrupt or does not match bundle.json. Retrain or restore the model folder."
        ) from exc
    return model, meta
