"""Opening bioimage.io model packages (``.zip``) that napari-unet exported.

Only the standard library and PyYAML are used, so the GUI can read a package's settings
without Keras or the ``bioimageio`` libraries. A package made by ``export`` keeps the model
folder's ``bundle.json`` under ``config.napari_unet.bundle`` and the network as ``keras_v3``
weights (a ``.keras`` file whose layer ``unet`` is the plugin's own channels-last model), so
prediction from a package uses the same normalisation and classes as from the folder.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path, PurePosixPath

CONFIG_KEY = "napari_unet"  # rdf.yaml: config.napari_unet holds what the plugin needs
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
INNER_MODEL = "unet"  # the layer of the exported (channels-first) model that is the plugin's model
SUPPORTED = ("bioimage.io model packages exported by napari-unet "
             "(keras_v3 weights of its 2-D U-Net, with config.napari_unet)")


class PackageError(ValueError):
    """A zip that is not a bioimage.io package napari-unet can run, or a damaged one."""


def is_package_path(path) -> bool:
    """Whether ``path`` names a zip file (a package to open), not a model folder."""
    path = Path(path)
    return path.suffix.lower() == ".zip" and not path.is_dir()


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise PackageError(f"Model package {path} does not exist; check the path.")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"{path} is not a readable zip file ({exc}): it is damaged or not a "
                           "bioimage.io package. Export the model again.") from None


def _rdf_name(archive: zipfile.ZipFile, path: Path) -> str:
    names = set(archive.namelist())
    for name in RDF_NAMES:
        if name in names:
            return name
    raise PackageError(f"{path} is not a bioimage.io package: it has no rdf.yaml (or bioimageio.yaml). "
                       f"napari-unet opens {SUPPORTED}.")


def _read_member(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, OSError, KeyError, EOFError, ValueError) as exc:
        raise PackageError(f"{path} is damaged: {name} cannot be read ({exc}). Export the model again.") from None


def read_rdf(path) -> dict:
    """The package's ``rdf.yaml`` as a dict."""
    import yaml

    path = Path(path)
    with _open_zip(path) as archive:
        text = _read_member(archive, _rdf_name(archive, path), path)
    try:
        rdf = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PackageError(f"{path}: rdf.yaml is not valid YAML ({first_line(exc)}); the package is damaged.") from None
    if not isinstance(rdf, dict):
        raise PackageError(f"{path}: rdf.yaml holds no description; the package is damaged.")
    return rdf


def first_line(exc) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _check_kind(rdf: dict, path: Path) -> dict:
    """The ``keras_v3`` weights entry of a package this plugin can run; else a clear refusal."""
    if rdf.get("type") != "model":
        raise PackageError(f"{path} describes a {rdf.get('type', 'resource of no type')!r}, not a model; "
                           f"napari-unet opens {SUPPORTED}.")
    weights, config = _dict_at(rdf, "weights"), _dict_at(rdf, "config")
    if "keras_v3" not in weights:
        formats = ", ".join(sorted(weights)) or "none"
        raise PackageError(f"{path} has {formats} weights, which napari-unet cannot run; it opens {SUPPORTED}. "
                           "Use bioimageio.core or the software the package names for it.")
    if not isinstance(config.get(CONFIG_KEY), dict) or "bundle" not in config[CONFIG_KEY]:
        raise PackageError(f"{path} holds a Keras model that napari-unet did not export (a different "
                           f"architecture or settings it cannot know); it opens {SUPPORTED}.")
    return weights["keras_v3"]


def _dict_at(rdf: dict, key: str) -> dict:
    value = rdf.get(key)
    return value if isinstance(value, dict) else {}


def package_meta(path) -> dict:
    """The model folder's settings (``bundle.json``) stored in the package, unchecked (``bundle``
    checks them); no Keras, no extraction."""
    path = Path(path)
    rdf = read_rdf(path)
    _check_kind(rdf, path)
    return rdf["config"][CONFIG_KEY]["bundle"]


def extract_keras_file(path, folder) -> Path:
    """Write the package's ``.keras`` weights into ``folder``, checking their sha256."""
    path = Path(path)
    entry = _check_kind(read_rdf(path), path)
    source = str(entry.get("source", ""))
    name = PurePosixPath(source).name
    if not name.endswith(".keras") or "://" in source:
        raise PackageError(f"{path}: keras_v3 weights {source!r} are not a .keras file inside the package; "
                           "the package is damaged. Export the model again.")
    with _open_zip(path) as archive:
        data = _read_member(archive, source, path) if source in archive.namelist() else None
    if data is None:
        raise PackageError(f"{path} lacks its weights file {source}; the package is incomplete. Export it again.")
    expected = entry.get("sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise PackageError(f"{path}: the weights file {source} does not match its sha256; the package is "
                           "damaged. Export the model again.")
    target = Path(folder) / name
    target.write_bytes(data)
    return target


def load_package_model(path):
    """The plugin's channels-last U-Net from a package (imports Keras)."""
    import tempfile

    from napari_unet.core.nn.saving import load_whole_model

    with tempfile.TemporaryDirectory(prefix="napari-unet-package-") as folder:
        keras_file = extract_keras_file(path, folder)
        try:
            exported = load_whole_model(keras_file)
            return exported.get_layer(INNER_MODEL)
        except Exception as exc:
            raise PackageError(f"The weights in {path} cannot be loaded ({type(exc).__name__}: "
                               f"{first_line(exc)[:300]}); the package is damaged or not napari-unet's. "
                               "Export the model again.") from exc
