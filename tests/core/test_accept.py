import numpy as np
import pytest

from napari_unet.core.accept import SliceAnnotatedError, accept_slice, label_values_of
from napari_unet.core.bundle_meta import BundleMeta, describe_classes

# No Keras here: scripts/test.sh runs this once, not again on JAX.
pytestmark = pytest.mark.backend_independent


def _stack():
    prediction = np.zeros((4, 6, 7), np.uint8)
    prediction[:, 1:4, 2:5] = 1
    annotations = np.zeros((4, 6, 7), np.uint8)
    annotations[0, 0, 0] = 2  # the user's own work on slice 0
    return prediction, annotations


def test_accept_copies_exactly_one_slice_and_leaves_the_others():
    prediction, annotations = _stack()
    before = annotations.copy()
    written = accept_slice(prediction, annotations, index=2)
    assert written == 9
    np.testing.assert_array_equal(annotations[2], prediction[2])
    others = [0, 1, 3]
    np.testing.assert_array_equal(annotations[others], before[others])


def test_existing_annotations_are_kept_unless_overwrite():
    prediction, annotations = _stack()
    before = annotations.copy()
    with pytest.raises(SliceAnnotatedError, match="Slice 0 already has 1 annotated pixels"):
        accept_slice(prediction, annotations, index=0)
    np.testing.assert_array_equal(annotations, before)
    assert accept_slice(prediction, annotations, index=0, overwrite=True) == 10  # 9 new, 1 painted one cleared
    np.testing.assert_array_equal(annotations[0], prediction[0])


def test_classes_become_the_annotation_values_the_model_learned():
    prediction, annotations = _stack()
    # Scribbles: background is painted 1, the class 2.
    assert accept_slice(prediction, annotations, index=1, label_values=[1, 2]) == 42
    assert set(np.unique(annotations[1])) == {1, 2} and (annotations[1][prediction[1] == 1] == 2).all()
    assert label_values_of(_meta(1, classes=describe_classes("scribbles", 1))) == [1, 2]
    ids = describe_classes("full_slices", 3, instances=True)
    assert label_values_of(_meta(3, classes=ids, instances=True)) is None
    assert label_values_of(_meta(2)) is None  # no mapping stored


def _meta(n_classes: int, **fields) -> BundleMeta:
    return BundleMeta(model_cfg={"n_classes": n_classes}, normalization={"low": [0.0], "high": [1.0]}, **fields)


def test_bad_input_is_refused_in_one_line():
    prediction, annotations = _stack()
    with pytest.raises(ValueError, match="shape"):
        accept_slice(prediction[:, :5], annotations, index=1)
    with pytest.raises(ValueError, match="outside the stack"):
        accept_slice(prediction, annotations, index=4)
    ids = np.full((4, 6, 7), 300, np.uint32)
    with pytest.raises(ValueError, match="uint32"):
        accept_slice(ids, annotations, index=1)
    with pytest.raises(ValueError, match="class 1 but the model has 1"):
        accept_slice(prediction, annotations, index=1, label_values=[0])
    assert not annotations[1:].any()
    two_d = np.zeros((6, 7), np.uint8)
    assert accept_slice(prediction[1], two_d) == 9
