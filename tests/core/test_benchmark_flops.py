"""The FLOP count that the benchmarks report (``benchmarks/_keras_tasks.py``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _keras_tasks import count_conv_flops  # noqa: E402

from napari_unet.core.config import ModelConfig  # noqa: E402
from napari_unet.core.nn.model import build_unet  # noqa: E402

TINY = ModelConfig(n_filters=4, depth=2)


def test_conv_flops_match_a_hand_count():
    model = build_unet(TINY.replace(batch_norm=False))
    h = w = 32

    def conv(cin, cout, size, k=3):
        return 2 * k * k * cin * cout * size * size

    expected = (
        conv(1, 4, 32) + conv(4, 4, 32)  # level 0
        + conv(4, 8, 16) + conv(8, 8, 16)  # level 1
        + conv(8, 16, 8) + conv(16, 16, 8)  # bottleneck
        + conv(16, 8, 8, k=2) + conv(16, 8, 16) + conv(8, 8, 16)  # up to level 1 (per input pixel)
        + conv(8, 4, 16, k=2) + conv(8, 4, 32) + conv(4, 4, 32)  # up to level 0
        + conv(4, 1, 32, k=1)  # output
    )
    assert count_conv_flops(model, h, w) == expected
    assert count_conv_flops(model, 64, 64) == 4 * expected
