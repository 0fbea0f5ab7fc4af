"""The ``napari-unet`` command line: train, predict, evaluate, export and demo, on the same engine as the GUI.

Training and prediction run in the worker process (as in napari), so this process never loads
TensorFlow and ``demo --view`` can open napari afterwards. Ctrl-C stops gracefully.
"""

from __future__ import annotations

from napari_unet.cli import handle_signals_while_starting, ignore_late_signals, restore_signals

if __name__ == "__main__":  # python -m napari_unet.cli.main: the handlers as early as the console script's
    handle_signals_while_starting()

import errno  # noqa: E402
import sys  # noqa: E402

DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # the disk refused: a fact to report, not a bug


def _command(name: str):
    """The function that runs sub-command ``name`` (heavier imports only once arguments parse)."""
    if name == "demo":
        from napari_unet.cli.demo import run_demo

        return run_demo
    if name == "export":
        from napari_unet.cli.export import run_export

        return run_export
    if name == "train":
        from napari_unet.cli.train import run_train

        return run_train
    if name == "suggest":
        from napari_unet.cli.suggest import run_suggest

        return run_suggest
    if name == "predict":
        from napari_unet.cli.predict import run_predict

        return run_predict
    from napari_unet.cli.evaluate import run_evaluate

    return run_evaluate


def main(argv=None) -> int:
    previous = handle_signals_while_starting()
    try:
        return _main(argv)
    finally:
        ignore_late_signals()
        if argv is not None:  # a caller in the same process (tests, scripts) gets its own handlers back
            restore_signals(previous)


def _main(argv) -> int:
    from napari_unet.cli.args import build_parser
    from napari_unet.cli.progress import JobFailed
    from napari_unet.core.config import ConfigError
    from napari_unet.runtime import interrupts

    args = build_parser().parse_args(argv)
    with interrupts.handled(ignore_after=True):  # no gap in which a late signal says 'nothing was done'
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
        except OSError as exc:
            if exc.errno not in DISK_ERRORS:
                print(f"napari-unet {args.command}: {_unexpected(exc, args.command)}", file=sys.stderr)
                return 1
            print(f"napari-unet {args.command}: error: {exc.strerror}: {exc.filename or ''}; free some space "
                  "or write to another disk.", file=sys.stderr)
            return 1
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
