"""The Triton kernels (in Triton's interpreter) on grids (patterndsl/grid.py) against the
float64 reference, forward and backward (tests/kernel_checks.py):
raster, tiled and Morton order, 2D and 3D, offsets, ragged n."""
from __future__ import annotations

import pytest

from kernel_checks import assert_kernels_match, interpreter  # (sets TRITON_INTERPRET=1)

pytest.importorskip("triton")

_FIXTURES = (interpreter,)  # (used by pytest by name)


@pytest.mark.parametrize(("source", "n", "block_size"), [
    ("grid(8, 8, tile=(4, 4)) { natten(3, 3) }", 64, 16),  # tiles = blocks
    ("grid(8, 8, order=morton) { euclid(2) } | window(1)", 70, 16),  # Morton: its bits in the source
    ("grid(6, 8, order=morton) { natten(3, 3) }", 50, 16),  # Morton (not a square of 2^k): block bitmaps
    ("grid(2, 4, 4, tile=(1, 2, 2)) { sliding_tiles3d(1, 1, 1) }", 35, 16),  # ragged: cells past n
])
def test_kernels_match_the_reference(source, n, block_size):
    assert_kernels_match(source, n, block_size)
