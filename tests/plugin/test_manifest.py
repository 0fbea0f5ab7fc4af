"""The npe2 manifest is valid, and the modules napari loads stay free of TF/Keras/Qt."""

import importlib
import json
import subprocess
import sys
import textwrap

from npe2 import PluginManifest

HEAVY = ("tensorflow", "keras", "PyQt5", "PyQt6", "PySide2", "PySide6", "qtpy")


def test_manifest_validates():
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-slice-unet"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_reader_and_writer_commands_resolve():
    manifest = PluginManifest.from_distribution("napari-slice-unet")
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    readers, writers = manifest.contributions.readers, manifest.contributions.writers
    assert {r.command for r in readers} == {"napari-slice-unet.get_reader", "napari-slice-unet.get_zarr_reader"}
    assert [r.accepts_directories for r in readers] == [False, True]
    assert [w.layer_types for w in writers] == [["labels"], ["labels"]]
    for command in ("napari-slice-unet.get_reader", "napari-slice-unet.write_labels",
                    "napari-slice-unet.get_zarr_reader", "napari-slice-unet.write_labels_ome_zarr"):
        module, attr = commands[command].split(":")
        assert callable(getattr(importlib.import_module(module), attr))


def _run_clean(tmp_path, body: str) -> dict:
    """Run ``body`` in a fresh interpreter; return which heavy modules it loaded."""
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        import tifffile
        tmp = sys.argv[1]
        """
    ) + textwrap.dedent(body) + textwrap.dedent(
        f"""
        print(json.dumps({{"loaded": [m for m in {HEAVY!r} if m in sys.modules],
                           "napari": "napari" in sys.modules}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_reader_and_writer_load_no_tf_keras_qt_or_napari(tmp_path):
    found = _run_clean(tmp_path, """
        import napari_unet, napari_unet.io.tiff, napari_unet.plugin.reader, napari_unet.plugin.writer
        from napari_unet.plugin.reader import get_reader
        from napari_unet.plugin.writer import write_labels
        tifffile.imwrite(tmp + "/cells.tif", np.zeros((3, 16, 16), np.uint16), photometric="minisblack")
        layers = get_reader(tmp + "/cells.tif")(tmp + "/cells.tif")
        assert layers[0][2] == "image", layers
        write_labels(tmp + "/out.tif", np.ones((3, 16, 16), np.uint8), {"scale": [1, 1, 1]})
        layers = get_reader(tmp + "/out.tif")(tmp + "/out.tif")
        assert layers[0][2] == "labels", layers
    """)
    assert found == {"loaded": [], "napari": False}


def test_sample_data_loads_no_tf_keras_or_qt(tmp_path):
    found = _run_clean(tmp_path, """
        import napari_unet.plugin.sample_data
        layers = napari_unet.plugin.sample_data.make_sample_data()
        assert layers and all(len(layer) == 3 for layer in layers), layers
    """)
    assert found["loaded"] == []
