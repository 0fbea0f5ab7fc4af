"""The ``napari-unet`` command line: train, predict, evaluate, export and demo, on the same engine as the GUI.

Training and prediction run in the worker process (as in napari), so this process never loads
TensorFlow and ``demo --view`` can open napari afterwards. Ctrl-C stops gracefully.
"""

from __future__ import annotations

import sys

from napari_unet.cli.args import build_parser
from napari_unet.core.config import ConfigError


def _command(name: str):
    """The function that runs sub-command ``name`` (heavier imports only once arguments parse)."""
    if name == "demo":
        from napari_unet.cli.demo import run_demo

        return run_demo
    if name == "export":
        from napari_unet.cli.export import run_export

        return run_export
    from napari_unet.cli import commands

    return getattr(commands, f"run_{name}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from napari_unet.runtime import interrupts
    from napari_unet.cli.commands import JobFailed

    with interrupts.handled():
        try:
            status = _command(args.command)(args)
        except (ConfigError, ValueError, FileExistsError, FileNotFoundError) as exc:
            print(f"napari-unet {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except JobFailed as exc:
            print(f"napari-unet {args.command}: {exc}", file=sys.stderr)
            return 1
        except interrupts.Interrupted as exc:
            print(f"napari-unet {args.command}: interrupted ({exc}).", file=sys.stderr)
            return interrupts.exit_status(exc.signum)
        except KeyboardInterrupt:
            print("Interrupted.", file=sys.stderr)
            return 130
        except Exception as exc:  # a bug: one line here, the traceback in a log file
            print(f"napari-unet {args.command}: {_unexpected(exc, args.command)}", file=sys.stderr)
            return 1
        signum = interrupts.last_signal()
    if signum is not None:  # the job stopped gracefully; still say that it did not finish
        print(f"napari-unet {args.command}: stopped by {interrupts.signal_name(signum)}.", file=sys.stderr)
        return interrupts.exit_status(signum)
    return status


def _unexpected(exc: Exception, command: str) -> str:
    from napari_unet.runtime.logs import first_line, write_exception

    log = write_exception(exc, f"napari-unet {command}: {' '.join(sys.argv[1:])}")
    line = f"unexpected error: {type(exc).__name__}: {first_line(str(exc))}"
    return line + (f" (details: {log})" if log else "")


if __name__ == "__main__":
    sys.exit(main())
