"""Model bundles: a folder with the weights and a self-describing ``bundle.json``.

::

    my-model/
      model.weights.h5   the weights (or model.keras, a whole saved model)
      bundle.json        format_version, model_config, train_config, normalization,
                         classes, annotation_mode, instances, input_axes, history,
                         validation, versions, created

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

from napari_unet.core.config import ConfigError, ModelConfig
from napari_unet.io import disk, leftovers

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
META_FILE = "bundle.json"
WEIGHTS_FILE = "model.weights.h5"
KERAS_FILE = "model.keras"
INPUT_AXES = "YXC"
REQUIRED_KEYS = ("format_version", "model_config", "normalization")


class BundleError(ValueError):
    """A model folder is missing, incomplete, corrupt or of an unsupported version."""


# ------------------------------------------------------------------ metadata


def describe_classes(annotation_mode: str, n_classes: int, instances: bool = False, label_values=None) -> dict:
    """How the annotation's label values map to the model outputs.

    ``names`` and ``label_values`` list, per class (background first), a name and
    the label value that trained it (``None`` where the annotation has no value
    for it, e.g. background in full-slices mode is 0, unlabelled in scribbles).
    ``label_values`` overrides the defaults (e.g. the one foreground value of a
    binary full-slices annotation, which may be 255).
    """
    activation = "sigmoid" if n_classes == 1 else "softmax"
    if instances:
        names = ["background", "interior", "boundary"]
        values = [0, None, None]
    elif n_classes == 1:
        names = ["background", "foreground"]
        values = [0, 1] if annotation_mode == "full_slices" else [1, 2]
    elif annotation_mode == "full_slices":
        names = ["background"] + [f"class {k}" for k in range(1, n_classes)]
        values = list(range(n_classes))
    else:
        names = ["background"] + [f"class {k}" for k in range(1, n_classes)]
        values = [k + 1 for k in range(n_classes)]
    if label_values is not None:
        values = [None if v is None else int(v) for v in label_values]
    return {"activation": activation, "n_outputs": int(n_classes), "names": names, "label_values": values}


def _versions() -> dict:
    import keras

    from napari_unet import __version__

    backend = keras.backend.backend()
    try:
        backend_version = __import__({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]).__version__
    except (KeyError, ImportError, AttributeError):
        backend_version = None
    return {
        "napari-unet": __version__,
        "keras": keras.__version__,
        "backend": backend,
        "backend_version": backend_version,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _jsonable(value):
    """Configs become dicts, numpy scalars/arrays plain numbers/lists, NaN becomes null."""
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def read_bundle_meta(path) -> dict:
    """Read and check ``bundle.json`` only (no Keras import); ``model_config`` stays a dict.

    A ``.zip`` is read as a bioimage.io package exported by napari-unet (its stored settings).
    """
    folder = Path(path)
    if folder.suffix.lower() == ".zip" and not folder.is_dir():
        from napari_unet.core.bioimageio.package import CONFIG_KEY, package_meta

        return check_bundle_meta(package_meta(folder), f"{folder} (config.{CONFIG_KEY}.bundle)", folder)
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
    return check_bundle_meta(meta, meta_path, folder)


def check_bundle_meta(meta, where, folder) -> dict:
    """``meta`` if it is a complete bundle description of a supported version; ``where`` names it."""
    if not isinstance(meta, dict):
        raise BundleError(f"{where} is corrupt: it holds no settings object; retrain the model.")
    version = meta.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise BundleError(
            f"{folder} has bundle format version {version!r}; this napari-unet reads version(s) "
            f"{list(SUPPORTED_FORMAT_VERSIONS)}. Use the napari-unet release that wrote it, or retrain."
        )
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise BundleError(f"{where} lacks {missing}; the model folder is incomplete, retrain the model.")
    try:
        ModelConfig.from_dict(meta["model_config"])
    except (ConfigError, TypeError, AttributeError) as exc:
        raise BundleError(f"{where} holds an invalid model_config: {exc}") from None
    return meta


def check_stored_normalization(meta: dict, folder) -> None:
    """Refuse stored percentiles that cannot map intensities (low >= high, not finite), before
    a prediction that uses them (``normalize="model"``) starts."""
    norm = meta.get("normalization")
    pairs = zip(norm.get("low", []), norm.get("high", [])) if isinstance(norm, dict) else [(None, None)]
    for channel, (low, high) in enumerate(pairs):
        if not _finite_range(low, high):
            raise BundleError(f"{folder}: the stored normalization is broken (channel {channel}: low {low}, "
                              f"high {high}); use --normalize volume ('Intensities' in the Segment dock), "
                              "or retrain the model.")


def _finite_range(low, high) -> bool:
    try:
        return bool(np.isfinite(low) and np.isfinite(high) and high > low)
    except TypeError:
        return False


def model_config_of(meta: dict) -> ModelConfig:
    """The ``ModelConfig`` stored in a bundle's metadata."""
    return ModelConfig.from_dict(meta["model_config"])


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


def save_bundle(path, model, meta: dict, overwrite: bool = False) -> Path:
    """Write ``model`` and ``meta`` as a bundle folder at ``path``, atomically.

    ``meta`` needs ``model_config`` and ``normalization``; ``format_version``,
    ``input_axes``, ``versions`` and ``created`` are filled in. If the write
    fails, whatever was at ``path`` before is left as it was.
    """
    target = Path(path).absolute()
    reclaim_stale_saves(target)  # first: it may put back a model that check_target must see
    check_target(target, overwrite)
    meta = dict(meta)
    missing = [key for key in ("model_config", "normalization") if key not in meta]
    if missing:
        raise ValueError(f"save_bundle needs {missing} in meta.")
    meta.setdefault("input_axes", INPUT_AXES)
    meta["format_version"] = FORMAT_VERSION
    meta["versions"] = _versions()
    meta["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    meta["weights"] = WEIGHTS_FILE
    text = json.dumps(_jsonable(meta), indent=2, sort_keys=True, allow_nan=False)

    target.parent.mkdir(parents=True, exist_ok=True)
    _check_room(target.parent, model, len(text))
    tmp = _fresh_folder(target, "saving")
    try:
        model.save_weights(str(tmp / WEIGHTS_FILE))
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
    done = []
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
    import keras

    from napari_unet.core.nn.model import build_unet

    folder = Path(path)
    meta = read_bundle_meta(folder)
    if folder.suffix.lower() == ".zip" and not folder.is_dir():
        from napari_unet.core.bioimageio.package import load_package_model

        return load_package_model(folder), meta
    weights, whole = folder / WEIGHTS_FILE, folder / KERAS_FILE
    try:
        if weights.is_file():
            model = build_unet(model_config_of(meta))
            model.load_weights(str(weights))
        elif whole.is_file():
            model = keras.saving.load_model(str(whole), compile=False)
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
