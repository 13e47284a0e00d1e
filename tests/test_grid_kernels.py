"""The Triton kernels (in Triton's interpreter) on grids (patterndsl/grid.py) against the
float64 reference, forward and backward (the helper of tests/test_triton_kernels.py):
raster, tiled and Morton order, 2D and 3D, offsets, ragged n."""
from __future__ import annotations

import os

import pytest

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported (see test_triton_kernels.py)
pytest.importorskip("triton")
torch = pytest.importorskip("torch")

import patterndsl  # noqa: E402
from test_triton_kernels import assert_matches_reference, interpreter  # noqa: E402,F401  (its fixture)

_FIXTURES = (interpreter,)  # (used by pytest by name)


@pytest.mark.parametrize(("source", "n", "block_size"), [
    ("grid(8, 8, tile=(4, 4)) { natten(3, 3) }", 64, 16),  # tiles = blocks
    ("grid(8, 8, order=morton) { euclid(2) } | window(1)", 70, 16),  # Morton: block bitmaps
    ("grid(2, 4, 4, tile=(1, 2, 2)) { sliding_tiles3d(1, 1, 1) }", 35, 16),  # ragged: cells past n
])
def test_kernels_match_the_reference(source, n, block_size):
    compiled = patterndsl.compile(source, n)
    generator = torch.Generator().manual_seed(n)
    q, k, v, d_out = (torch.randn(1, 2, n, 16, generator=generator) for _ in range(4))
    assert_matches_reference(compiled, 0, q, k, v, d_out, block_size=block_size)
