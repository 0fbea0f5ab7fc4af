"""Training on a single annotated slice: one line that says more slices help, and names one.

No ranking of slices beat random picks (benchmarks/annotation_efficiency.py: the model's
uncertainty, its disagreement at boundaries, and how unlike the annotated slices a slice looks),
so the slice named is chosen for coverage alone: the one that leaves the shortest distance from
any slice of the stack to its nearest annotated slice.
"""

from __future__ import annotations


def spreading_slice(annotated, n_slices: int) -> int | None:
    """The slice that, added to ``annotated``, brings every slice of ``n_slices`` closest to an
    annotated one (the middle of the stack when none is); None when every slice is annotated."""
    marks = sorted({int(z) for z in annotated if 0 <= int(z) < n_slices})
    if not marks:
        return n_slices // 2 if n_slices else None
    # (farthest distance to an annotation within a run of unannotated slices, where to split it)
    runs = [((b - a) // 2, (a + b) // 2) for a, b in zip(marks, marks[1:]) if b - a > 1]
    if marks[0] > 0:  # a run at an edge is reached from one side only: a third of the way in
        runs.append((marks[0], round(marks[0] / 3)))
    if marks[-1] < n_slices - 1:
        tail = n_slices - 1 - marks[-1]
        runs.append((tail, n_slices - 1 - round(tail / 3)))
    return max(runs, key=lambda run: run[0])[1] if runs else None


def more_slices_line(annotated, n_slices: int) -> str | None:
    """One line when a single slice (``annotated``) of a stack of ``n_slices`` is annotated:
    more slices help, and which next."""
    annotated = [int(z) for z in annotated]
    if len(annotated) != 1 or n_slices < 2:
        return None
    return (f"Only slice {annotated[0]} is annotated, so the model learned from that one slice: annotating "
            f"more slices helps most. Slice {spreading_slice(annotated, n_slices)}, for example, "
            "spreads the annotations through the stack.")
