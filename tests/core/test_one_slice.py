import pytest

from napari_unet.core.train.one_slice import more_slices_line, spreading_slice

pytestmark = pytest.mark.backend_independent


@pytest.mark.parametrize(("annotated", "n_slices", "expected"), [
    ([5], 30, 21),        # the long run after slice 5, a third of the way back from the end
    ([24], 30, 8),        # the long run before it
    ([0, 29], 30, 14),    # between two: the middle
    ([0, 10, 29], 30, 19),
    ([], 30, 15),         # nothing annotated: the middle of the stack
    ([0], 2, 1),
    ([0, 1], 2, None),    # every slice annotated
])
def test_the_spreading_slice_brings_every_slice_closest_to_an_annotation(annotated, n_slices, expected):
    assert spreading_slice(annotated, n_slices) == expected


def test_the_spreading_slice_minimises_the_farthest_distance_to_an_annotation():
    def farthest(marks, n):
        return max(min(abs(z - m) for m in marks) for z in range(n))

    for n in (7, 12, 31):
        for annotated in ([0], [3], [n - 1], [1, n - 2], [2, 5]):
            best = min(farthest(annotated + [z], n) for z in range(n) if z not in annotated)
            assert farthest(annotated + [spreading_slice(annotated, n)], n) == best, (annotated, n)


def test_one_annotated_slice_of_a_stack_gets_one_line_naming_another():
    assert more_slices_line([5], 30) == (
        "Only slice 5 is annotated, so the model learned from that one slice: annotating more slices helps "
        "most. Slice 21, for example, spreads the annotations through the stack.")
    assert more_slices_line([5, 9], 30) is None  # two slices
    assert more_slices_line([0], 1) is None  # a single image: nothing else to annotate
