"""Tables, the keep-or-remove verdict and the curves of ``annotation_efficiency.py``.

Spreads are sample standard deviations over the seeds (n - 1). A ranking "beats random" at a
slice count when its mean adapted Rand error is lower than random's by more than the larger of
the two spreads; it meets the bar on a stack when it does so at every count after the start
(the start is shared), measured over at least MIN_SEEDS seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from _common import markdown_table

PIXEL_NAMES = {"membrane_dice": "membrane Dice", "foreground_dice": "foreground Dice"}
MIN_SEEDS = 3  # fewer seeds have no spread worth the name
COLOURS = {"random": "tab:grey", "disagreement": "tab:blue", "entropy": "tab:orange"}


def sd(values) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def by_seed(rows: list, strategy: str, n: int, key: str) -> dict:
    return {r["seed"]: r[key] for r in rows if r["strategy"] == strategy and r["n_annotated"] == n}


def counts_of(rows: list, strategy: str) -> list:
    return sorted({r["n_annotated"] for r in rows if r["strategy"] == strategy})


def against_random(rows: list, strategy: str, start: int) -> dict:
    """Per slice count after the start: the gain in adapted Rand error over random (positive:
    better), the spread it must beat, and the same gain paired by seed."""
    per_count = {}
    for n in (n for n in counts_of(rows, strategy) if n > start):
        mine = by_seed(rows, strategy, n, "adapted_rand_error")
        theirs = by_seed(rows, "random", n, "adapted_rand_error")
        paired = [theirs[s] - mine[s] for s in mine if s in theirs]
        gain = float(np.mean(list(theirs.values())) - np.mean(list(mine.values())))
        spread = max(sd(list(mine.values())), sd(list(theirs.values())))
        per_count[n] = {"gain": gain, "spread": spread, "beats": gain > spread,
                        "paired_gain": float(np.mean(paired)), "paired_sd": sd(paired)}
    seeds = len({r["seed"] for r in rows if r["strategy"] == strategy})
    beats_everywhere = bool(per_count) and all(c["beats"] for c in per_count.values())
    return {"per_count": per_count, "seeds": seeds, "meets_bar": beats_everywhere and seeds >= MIN_SEEDS}


def report_stack(result: dict, strategies: list, start: int) -> dict:
    """The markdown section of one stack and its verdict per ranking."""
    rows, pixel = result["rounds"], PIXEL_NAMES[result["pixel_score"]]
    verdict = {s: against_random(rows, s, start) for s in strategies if s != "random"}
    table = []
    for strategy in strategies:
        for n in counts_of(rows, strategy):
            are = list(by_seed(rows, strategy, n, "adapted_rand_error").values())
            pix = list(by_seed(rows, strategy, n, "pixel").values())
            gain = verdict.get(strategy, {}).get("per_count", {}).get(n)
            versus = f"{gain['paired_gain']:+.4f} ± {gain['paired_sd']:.4f}" if gain else "-"
            table.append([strategy, n, f"{np.mean(are):.4f} ± {sd(are):.4f}", f"{np.mean(pix):.4f} ± {sd(pix):.4f}",
                          versus])
    ref = result["reference"]
    table.append([f"all {len(result['pool'])} pool slices", len(result["pool"]),
                  mean_sd([r["adapted_rand_error"] for r in ref]), mean_sd([r["pixel"] for r in ref]), "-"])
    base = result["baseline"]
    for key in ("watershed 3-D", "watershed per slice"):
        table.append([f"Gaussian + Otsu + {key} ({base['polarity']})", "-", f"{base[key]['adapted_rand_error']:.4f}",
                      f"{base['pixel']:.4f}" if key == base["best"] else "-", "-"])
    header = ["picks", "annotated slices", "adapted Rand error (lower is better)", pixel,
              "random's error minus this, paired by seed"]
    lines = [f"### {result['name']}: pool {_span(result['pool'])}, scored on {_span(result['scored'])}", "",
             markdown_table(header, table), ""]
    lines += [_verdict_text(s, v) for s, v in verdict.items()]
    return {"name": result["name"], "text": "\n".join(lines), "verdict": verdict}


def mean_sd(values) -> str:
    return f"{np.mean(values):.4f} ± {sd(values):.4f}"


def _span(slices) -> str:
    slices = list(slices)
    if slices == list(range(slices[0], slices[-1] + 1)):
        return f"slices {slices[0]}-{slices[-1]}"
    return "slices " + ", ".join(map(str, slices))


def _verdict_text(strategy: str, verdict: dict) -> str:
    counts = verdict["per_count"]
    beats = [n for n, c in counts.items() if c["beats"]]
    said = ", ".join(f"{n}: {c['gain']:+.4f} (spread {c['spread']:.4f})" for n, c in counts.items())
    few = f" (only {verdict['seeds']} seed(s); the bar needs {MIN_SEEDS})" if verdict["seeds"] < MIN_SEEDS else ""
    return (f"- {strategy} against random, gain in adapted Rand error per slice count: {said}. Beats it by more "
            f"than the spread at {beats or 'no count'}: {'meets' if verdict['meets_bar'] else 'misses'} the bar{few}.")


def verdict_line(sections: list) -> str:
    """Keep a ranking only if it meets the bar on every stack run (two are needed)."""
    strategies = sorted({s for section in sections for s in section["verdict"]})
    lines = []
    for strategy in strategies:
        met = [sec["name"] for sec in sections if sec["verdict"].get(strategy, {}).get("meets_bar")]
        keep = len(met) == len(sections) and len(sections) >= 2
        lines.append(f"**{strategy}**: meets the bar on {', '.join(met) or 'no stack'} of "
                     f"{len(sections)} stack(s): {'keep' if keep else 'does not earn its place'}.")
    return "\n".join(lines)


def plot(results: dict, strategies: list, path: Path) -> Path:
    """Object and pixel score per annotated slice count, one row of plots per stack."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(10, 3.6 * len(results)), squeeze=False)
    for row, result in zip(axes, results.values()):
        _curves(row[0], result, strategies, "adapted_rand_error", "adapted Rand error (lower is better)")
        _curves(row[1], result, strategies, "pixel", PIXEL_NAMES[result["pixel_score"]])
        row[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _curves(ax, result: dict, strategies: list, key: str, title: str) -> None:
    rows = result["rounds"]
    for k, strategy in enumerate(strategies):
        counts = counts_of(rows, strategy)
        values = [list(by_seed(rows, strategy, n, key).values()) for n in counts]
        shift = (k - (len(strategies) - 1) / 2) * 0.06  # error bars side by side, not on top
        ax.errorbar(np.array(counts) + shift, [np.mean(v) for v in values], yerr=[sd(v) for v in values],
                    marker="o", capsize=3, label=strategy, color=COLOURS.get(strategy))
    from matplotlib.ticker import MaxNLocator

    ref = [r[key] for r in result["reference"]]
    ax.axhline(np.mean(ref), color="black", linestyle="--", label=f"all {len(result['pool'])} pool slices")
    ax.axhspan(np.mean(ref) - sd(ref), np.mean(ref) + sd(ref), color="black", alpha=0.08)
    base = result["baseline"]
    ax.axhline(base["adapted_rand_error"] if key == "adapted_rand_error" else base["pixel"], color="tab:red",
               linestyle=":", label=f"classical: Gaussian + Otsu + {base['best']}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("annotated slices")
    ax.set_title(f"{result['name']}: {title}", fontsize=9)
