"""The ``napari-unet`` console script's entry (pyproject.toml): the signal handlers come first."""

from napari_unet.cli import handle_signals_while_starting


def main() -> int:
    handle_signals_while_starting()  # before any other import: from here on a signal ends in one line
    from napari_unet.cli.main import main as run

    return run()
