"""Prediction on dask.distributed (``predict --workers``/``--scheduler``), and the line a stopped run ends with."""

from __future__ import annotations

import shutil

from tqdm import tqdm

from napari_unet.cli.outputs import incomplete_name, say_written
from napari_unet.cli.progress import JobFailed, say_why_unfinished
from napari_unet.runtime import interrupts


def predict_on_cluster(args, cluster, finals, cfg, channel_axis, scale, axes, units) -> int:
    """``predict --workers N`` / ``--scheduler ADDRESS``: blocks of slices on dask.distributed."""
    from napari_unet.runtime import cluster as dist

    out, prob = list(finals)[0], next(iter(list(finals)[1:]), None)
    bars, summary = [], None  # bars: made at the first finished block, so a failure before shows none

    def on_block(done, total):
        if not bars:
            bars.append(tqdm(total=total, desc="Blocks", unit="block", dynamic_ncols=True))
        bars[0].update(done - bars[0].n)

    try:
        with dist.connect(scheduler=args.scheduler, workers=cluster.workers) as client:
            summary = dist.predict_distributed(args.image, args.model, out=out, cfg=cfg, client=client, prob=prob,
                                               channel_axis=channel_axis, retries=cluster.retries,
                                               block_yx=cluster.block_yx, scale=scale,
                                               axes=axes, units=units, on_message=tqdm.write, on_block=on_block,
                                               keep=incomplete_name)
    except dist.ClusterError as exc:
        raise JobFailed(f"Segmentation failed: {exc}") from None
    except interrupts.Interrupted:
        if summary is None:  # before or while the blocks ran, or a second Ctrl-C: nothing kept
            for tmp in finals.values():  # again: the local cluster is closed now, its blocks no longer write
                shutil.rmtree(tmp, ignore_errors=True)
            say_why_unfinished(_nothing_kept(finals, cfg, "Cancelled"))
            raise
        # while the cluster closed: the outputs are already in place, say what they are
    finally:
        for bar in bars:
            bar.close()
    if summary["stopped"] is not None:
        say_why_unfinished(_kept_of_cluster(summary, finals, cfg))
        return 130
    say_written(f"Labels written to {out}" + (f", probabilities to {prob}" if prob else "")
                + f" ({summary['n_blocks']} block(s) of slices on {summary['n_workers']} worker(s), "
                  f"{summary['seconds']:.1f} s)")
    return 0


def _kept_of_cluster(summary: dict, finals: dict, cfg) -> str:
    """One line: what a cluster run stopped by a signal kept (``cluster.predict_distributed``)."""
    n_regions, regions_done = summary["n_regions"], {}
    for block, r in summary["done"]:
        regions_done.setdefault(tuple(block), set()).add(r)
    whole = [block for block, done in regions_done.items() if len(done) == n_regions]
    finished = sum(b - a for a, b in whole)
    if not summary["kept"]:
        return _nothing_kept(finals, cfg, f"Cancelled after {finished} of {summary['n_slices']} slices")
    partial = [f"slices {_ranges([block])} in {len(done)} of their {n_regions} Y/X regions"
               for block, done in sorted(regions_done.items()) if len(done) < n_regions]
    finished_parts = (f"slices ({_ranges(whole)})" if not partial else
                      f"parts ({'; '.join(([f'slices {_ranges(whole)}'] if whole else []) + partial)})")
    kept = ", ".join(map(str, summary["kept"].values()))
    asked = ", ".join(map(str, finals))
    return (f"Cancelled after {finished} of {summary['n_slices']} slices: the finished {finished_parts} are in "
            f"{kept} (the {'other slices are' if not partial else 'rest is'} 0); {asked} "
            f"{'was' if len(finals) == 1 else 'were'} not written.")


def _nothing_kept(finals: dict, cfg, stopped: str) -> str:
    """One line: a cluster run stopped with nothing to keep, and its temporary folders gone."""
    tmps = list(finals.values())
    left = [str(tmp) for tmp in tmps if tmp.exists()]
    why = "objects need every block joined, so " if cfg.output == "instances" else ""
    folders = f"the temporary folder{'s' if len(tmps) > 1 else ''} {', '.join(map(str, tmps))}"
    return (f"{stopped}: {why}nothing was written, and {folders} "
            + (f"could not be removed: blocks still running wrote into it after the stop; delete {', '.join(left)}."
               if left else f"{'were' if len(tmps) > 1 else 'was'} removed."))


def _ranges(blocks) -> str:
    """Blocks of slices ``(start, stop)`` as ranges, adjacent ones merged: ``0-7, 12-15``."""
    merged = []
    for a, b in sorted(blocks):
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return ", ".join(f"{a}-{b - 1}" if b - a > 1 else f"{a}" for a, b in merged)
